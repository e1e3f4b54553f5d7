package measure

import "github.com/vigil-attest/vigil/report"

// The runtime report's format lives in package report, which links no
// collector; these names keep measure's callers compiling.

// Report types (report.Report and its sections).
type (
	ParseError        = report.ParseError
	Status            = report.Status
	Section           = report.Section
	Report            = report.Report
	Enforcement       = report.Enforcement
	IPE               = report.IPE
	EVM               = report.EVM
	Debug             = report.Debug
	IMA               = report.IMA
	IMAPCR            = report.IMAPCR
	Kernel            = report.Kernel
	MeasuredBoot      = report.MeasuredBoot
	LoggedVariable    = report.LoggedVariable
	LoggedImage       = report.LoggedImage
	LoggedShimEvent   = report.LoggedShimEvent
	Modules           = report.Modules
	LoadedModule      = report.LoadedModule
	HiddenModule      = report.HiddenModule
	ModuleAllocations = report.ModuleAllocations
	Processes         = report.Processes
	CriticalState     = report.CriticalState
	HiddenProcess     = report.HiddenProcess
	SecureBoot        = report.SecureBoot
	MokSBState        = report.MokSBState
	SignatureDB       = report.SignatureDB
	DBCertificate     = report.DBCertificate
	PlatformVerdict   = report.PlatformVerdict
	BootFile          = report.BootFile
	Taint             = report.Taint
	Vocabulary        = report.Vocabulary
)

// Report constants.
const (
	Version                 = report.Version
	MediaType               = report.MediaType
	StatusOK                = report.StatusOK
	StatusUnavailable       = report.StatusUnavailable
	StatusError             = report.StatusError
	ViewProcModules         = report.ViewProcModules
	ViewSysfs               = report.ViewSysfs
	ViewKallsyms            = report.ViewKallsyms
	ViewFtrace              = report.ViewFtrace
	ViewBTF                 = report.ViewBTF
	ProblemNotRunning       = report.ProblemNotRunning
	ProblemExeMismatch      = report.ProblemExeMismatch
	ProblemExeDeleted       = report.ProblemExeDeleted
	ProblemPtraced          = report.ProblemPtraced
	ProblemLDPreload        = report.ProblemLDPreload
	ProblemSignerMismatch   = report.ProblemSignerMismatch
	ProblemUnreadable       = report.ProblemUnreadable
	ViewProbe               = report.ViewProbe
	ViewReaddir             = report.ViewReaddir
	SignatureSigned         = report.SignatureSigned
	SignatureUnsigned       = report.SignatureUnsigned
	SignatureUnknown        = report.SignatureUnknown
	LockdownNone            = report.LockdownNone
	LockdownIntegrity       = report.LockdownIntegrity
	LockdownConfidentiality = report.LockdownConfidentiality
	LockdownUnknown         = report.LockdownUnknown
)

// Canonicalize returns the canonical form of any JSON document
// (report.Canonicalize).
func Canonicalize(doc []byte) ([]byte, error) { return report.Canonicalize(doc) }

// IsCanonical returns nil when b is canonical JSON (report.IsCanonical).
func IsCanonical(b []byte) error { return report.IsCanonical(b) }

// ParseReport decodes a canonical runtime report strictly
// (report.ParseReport).
func ParseReport(b []byte) (*Report, error) { return report.ParseReport(b) }

// NewReport returns the report of a host that exposes nothing
// (report.NewReport).
func NewReport() *Report { return report.NewReport() }

// Vocabularies returns the closed vocabularies of the report's claims
// (report.Vocabularies).
func Vocabularies() []Vocabulary { return report.Vocabularies() }
