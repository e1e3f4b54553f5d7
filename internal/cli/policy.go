package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"github.com/vigil-attest/vigil/codepolicy"
	"github.com/vigil-attest/vigil/efi"
	"github.com/vigil-attest/vigil/trust"
)

func newPolicyCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with code-integrity policies: import block lists, validate, show",
	}
	cmd.AddCommand(newPolicyImportCmd(g), newPolicyExportCmd(g), newPolicyValidateCmd(g))
	cmd.AddCommand(newPolicyTestCmd(g))
	return cmd
}

type policyImportOptions struct {
	From       string
	Policy     string
	Out        string
	Output     string
	Categories []string
	VerifyCRL  bool
	CRLIssuer  []string
	KEK        []string
}

func newPolicyImportCmd(g *globalOptions) *cobra.Command {
	o := &policyImportOptions{}
	cmd := &cobra.Command{
		Use:   "import --from loldrivers|wdac|crl|dbx|mokx [--policy P] [--out F] FILE",
		Short: "Merge a block list (LOLDrivers CSV, WDAC deny policy XML, X.509 CRL, dbx/MokListX) into a policy",
		Long: `Import reads a block list and merges its entries into a policy, reporting how
many entries each key gained and how many were already present or skipped (with
the reasons). The policy is read from --policy when it exists (otherwise an empty
default policy is used) and written to --out (default: --policy, or stdout).

  loldrivers  drivers.csv from loldrivers.io: file SHA-256 -> deny.sha256,
              Authenticode SHA-256/SHA-1 -> deny.authentihash_sha256/_sha1
  wdac        Microsoft's recommended driver block rules (SiPolicy XML): hash
              deny rules and signer CertRoot TBS rules
  crl         an X.509 CRL (DER or PEM): serials, revocation dates and reasons
  dbx, mokx   an EFI_SIGNATURE_LIST database: raw lists (efi-readvar -o,
              /sys/firmware/efi/mok-variables/MokListX), an efivarfs file
              (4-byte attribute prefix) or an authenticated update
              (EFI_VARIABLE_AUTHENTICATION_2, as dbxupdate.bin ships; its
              signature is verified against --kek, the platform's KEK, when
              given, and not otherwise). EFI_CERT_SHA256/SHA1 ->
              deny.authentihash_sha256/_sha1; EFI_CERT_X509 -> a revocation
              by tbs_sha256 keeping the certificate; EFI_CERT_X509_SHA256 ->
              a revocation by tbs_sha256, revoked_at = TimeOfRevocation when
              not zero; EFI_CERT_X509_SHA384/512 with a zero time ->
              deny.signer_tbs_sha384/512. Other types are skipped and counted.`,
		Example: `  vigil policy import --from loldrivers --policy drivers.yaml drivers.csv
  vigil policy import --from wdac --policy drivers.yaml SiPolicy_Enforced.xml
  vigil policy import --from crl --policy kmcs.yaml --output json revoked.crl
  vigil policy import --from dbx --policy boot.yaml DBXUpdate.bin
  vigil policy import --from dbx --kek KEK.crt --policy boot.yaml DBXUpdate.bin
  vigil policy import --from mokx --policy boot.yaml /sys/firmware/efi/efivars/MokListXRT-605dab50-e046-4300-abb6-3dd810dd8b23`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Output != "text" && o.Output != "json" {
				return usageErr("--output must be text or json")
			}
			p := codepolicy.Default()
			if o.Policy != "" {
				if _, err := os.Stat(o.Policy); err == nil {
					var err error
					if p, err = codepolicy.Load(o.Policy); err != nil {
						return usageErr("policy: %v", err)
					}
				}
			}
			in, err := os.Open(args[0])
			if err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			defer in.Close()
			var st codepolicy.ImportStats
			switch o.From {
			case "loldrivers":
				st, err = codepolicy.ImportLOLDrivers(p, in, o.Categories)
			case "wdac":
				st, err = codepolicy.ImportWDAC(p, in)
			case "dbx", "mokx":
				var b []byte
				var opts []codepolicy.DatabaseOption
				if len(o.KEK) > 0 {
					kek, err := trust.LoadCertificateFiles(o.KEK)
					if err != nil {
						return usageErr("--kek: %v", err)
					}
					opts = append(opts, codepolicy.VerifyUpdate(kek...))
				}
				if b, err = readAllBounded(in, 64<<20); err == nil {
					st, err = codepolicy.ImportSignatureDatabase(p, b, o.From, opts...)
				}
			case "crl":
				var b []byte
				var opts []codepolicy.CRLOption
				if o.VerifyCRL || len(o.CRLIssuer) > 0 {
					inter, err := trust.LoadCertificateFiles(o.CRLIssuer)
					if err != nil {
						return usageErr("--crl-issuer: %v", err)
					}
					opts = append(opts, codepolicy.VerifyCRL(inter...))
				}
				if b, err = readAllBounded(in, 512<<20); err == nil {
					st, err = codepolicy.ImportCRL(p, b, opts...)
				}
			default:
				return usageErr("--from must be loldrivers, wdac, crl, dbx or mokx")
			}
			if err != nil {
				return &exitError{code: ExitUsage, err: fmt.Errorf("import %s: %w", args[0], err)}
			}
			out, err := p.Marshal()
			if err != nil {
				return err
			}
			dest := o.Out
			if dest == "" {
				dest = o.Policy
			}
			if dest == "" || dest == "-" {
				if _, err := g.stdout.Write(out); err != nil {
					return err
				}
			} else if err := writeFileAtomic(dest, out, 0o644); err != nil {
				return &exitError{code: ExitUsage, err: err}
			}
			g.logger.Info("imported", "from", o.From, "file", args[0], "read", st.Read)
			w := g.stderr
			if dest != "" && dest != "-" {
				w = g.stdout
			}
			if o.Output == "json" {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			fmt.Fprintf(w, "imported %s (%s): %d records read, %d duplicates, %d skipped\n", args[0], o.From, st.Read, st.Duplicates, st.Skipped)
			for _, k := range sortedKeys(st.Added) {
				fmt.Fprintf(w, "  added %-28s %d\n", k, st.Added[k])
			}
			for _, k := range sortedKeys(st.SkippedReasons) {
				fmt.Fprintf(w, "  skipped: %-26s %d\n", k, st.SkippedReasons[k])
			}
			if o.From == "crl" {
				if st.Verified {
					fmt.Fprintf(w, "  CRL signature verified against the policy's anchors\n")
				} else {
					fmt.Fprintf(w, "  CRL signature NOT verified (use --verify-crl)\n")
				}
			}
			for _, warn := range st.Warnings {
				fmt.Fprintf(w, "  warning: %s\n", warn)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.From, "from", "", "source format: loldrivers, wdac, crl, dbx or mokx")
	f.StringVarP(&o.Policy, "policy", "p", "", "policy to merge into (created when absent)")
	f.StringVar(&o.Out, "out", "", "where to write the merged policy (default: --policy, or stdout)")
	f.StringVarP(&o.Output, "output", "o", "text", "report format: text or json")
	f.StringSliceVar(&o.Categories, "category", nil, "LOLDrivers categories to import (default: vulnerable driver, malicious)")
	f.BoolVar(&o.VerifyCRL, "verify-crl", false, "crl: refuse a CRL whose signature does not chain to the policy's anchors")
	f.StringSliceVar(&o.CRLIssuer, "crl-issuer", nil, "crl: intermediate certificates for verifying the CRL (implies --verify-crl)")
	f.StringSliceVar(&o.KEK, "kek", nil, "dbx: the platform's KEK certificates (PEM or DER); an authenticated update must be signed by one, or by a certificate that chains to one")
	return cmd
}

type policyExportOptions struct {
	To     string
	Policy string
	Owner  string
	Output string
}

func newPolicyExportCmd(g *globalOptions) *cobra.Command {
	o := &policyExportOptions{}
	cmd := &cobra.Command{
		Use:   "export --policy P --to dbx|mokx|blacklist-hashes|revocation-keys|modprobe|ipe FILE",
		Short: "Write the artefacts a host needs to enforce the policy's revocations at the next boot",
		Long: `Export writes what of the policy a platform can enforce itself, in that
platform's format, and reports how many entries were written and which policy
entries the format cannot express. FILE "-" is stdout.

  dbx               EFI_SIGNATURE_LISTs for the firmware's dbx (enroll with
                    efi-updatevar, or sign with sign-efi-sig-list first):
                    deny.authentihash_sha256/_sha1 -> EFI_CERT_SHA256/SHA1;
                    revocations holding their certificate, with no revoked_at
                    -> EFI_CERT_X509; other tbs_sha256 revocations ->
                    EFI_CERT_X509_SHA256 with TimeOfRevocation = revoked_at;
                    deny.signer_tbs_sha256/384/512 -> EFI_CERT_X509_SHA*.
  mokx              shim's MokListX (mokutil --mokx --import): SHA-256
                    hashes and X.509 certificates only; also deny.sha256,
                    the whole-file hashes Debian's kernel checks modules
                    against at the next boot.
  blacklist-hashes  the kernel's CONFIG_SYSTEM_BLACKLIST_HASH_LIST file:
                    "tbs:<hex>" for deny.signer_tbs_* and tbs_sha256
                    revocations, "bin:<hex>" for deny.signed_content_sha256,
                    comma-separated as certs/blacklist_hashes.c includes it.
  revocation-keys   a PEM for CONFIG_SYSTEM_REVOCATION_KEYS: the certificates
                    of revocations that hold one (imported from dbx/mokx
                    X.509 entries). Hash and issuer/serial revocations cannot
                    be turned back into certificates.
  modprobe          a modprobe.d block list. The policy names no modules (its
                    module denials are by hash and signer), so it is empty.
  ipe               an IPE LSM policy admitting only the policy's
                    verity.dm_roothash volumes and verity.fs_digest files
                    (every operation) and denying everything else. Anchors,
                    signers and hash denials have no IPE form: a policy
                    without verity entries is refused, never exported
                    permissive.

Nothing is written when the policy holds nothing the format can express
(exit 2).`,
		Example: `  vigil policy export --policy boot.yaml --to dbx dbx.esl
  sign-efi-sig-list -a -k KEK.key -c KEK.crt dbx dbx.esl dbx.auth
  vigil policy export --policy kmod.yaml --to blacklist-hashes certs/vigil-blacklist
  vigil policy export --policy boot.yaml --to revocation-keys -o json revoked.pem
  vigil policy export --policy fleet.yaml --to ipe fleet.ipe`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Output != "text" && o.Output != "json" {
				return usageErr("--output must be text or json")
			}
			if o.Policy == "" {
				return usageErr("--policy is required")
			}
			p, err := codepolicy.Load(o.Policy)
			if err != nil {
				return usageErr("policy: %v", err)
			}
			var out []byte
			var st codepolicy.ExportStats
			switch o.To {
			case "dbx", "mokx":
				owner, gerr := efi.ParseGUID(o.Owner)
				if gerr != nil {
					return usageErr("--owner: %v", gerr)
				}
				out, st, err = codepolicy.ExportSignatureDatabase(p, o.To, owner)
			case "blacklist-hashes":
				out, st, err = codepolicy.ExportBlacklistHashes(p)
			case "revocation-keys":
				out, st, err = codepolicy.ExportRevocationKeys(p)
			case "modprobe":
				out, st, err = codepolicy.ExportModprobe(p)
			case "ipe":
				out, st, err = codepolicy.ExportIPE(p)
			default:
				return usageErr("--to must be dbx, mokx, blacklist-hashes, revocation-keys, modprobe or ipe")
			}
			if err != nil {
				return &exitError{code: ExitUsage, err: fmt.Errorf("export %s from %s: %w", o.To, o.Policy, err)}
			}
			w := g.stderr
			if args[0] == "-" {
				if _, err := g.stdout.Write(out); err != nil {
					return err
				}
			} else {
				if err := writeFileAtomic(args[0], out, 0o644); err != nil {
					return &exitError{code: ExitUsage, err: err}
				}
				w = g.stdout
			}
			if o.Output == "json" {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			fmt.Fprintf(w, "exported %s to %s: %d entries\n", o.To, args[0], st.TotalWritten())
			for _, k := range sortedKeys(st.Written) {
				fmt.Fprintf(w, "  wrote %-28s %d\n", k, st.Written[k])
			}
			for _, k := range sortedKeys(st.NotExported) {
				fmt.Fprintf(w, "  not exported: %s: %d\n", k, st.NotExported[k])
			}
			for _, warn := range st.Warnings {
				fmt.Fprintf(w, "  warning: %s\n", warn)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.To, "to", "", "target format: dbx, mokx, blacklist-hashes, revocation-keys, modprobe or ipe")
	f.StringVarP(&o.Policy, "policy", "p", "", "policy to export from")
	f.StringVar(&o.Owner, "owner", "00000000-0000-0000-0000-000000000000", "dbx/mokx: SignatureOwner GUID of every entry")
	f.StringVarP(&o.Output, "output", "o", "text", "report format: text or json")
	return cmd
}

func newPolicyValidateCmd(g *globalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "validate POLICY...",
		Short: "Check policy files and print their digest and sizes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			type summary struct {
				Path         string `json:"path"`
				Valid        bool   `json:"valid"`
				Error        string `json:"error,omitempty"`
				Digest       string `json:"digest,omitempty"`
				Anchors      int    `json:"anchors"`
				Revocations  int    `json:"revocations"`
				DenyEntries  int    `json:"deny_entries"`
				AllowSigners int    `json:"allow_signers"`
			}
			bad := false
			for _, path := range args {
				s := summary{Path: path}
				p, err := codepolicy.Load(path)
				if err != nil {
					s.Error = err.Error()
					bad = true
				} else {
					s.Valid = true
					s.Digest = p.Digest()
					s.Anchors = len(p.Anchors())
					s.Revocations = len(p.Revocations)
					s.DenyEntries = p.Deny.Len()
					s.AllowSigners = len(p.AllowSigners)
				}
				if output == "json" {
					if err := json.NewEncoder(g.stdout).Encode(s); err != nil {
						return err
					}
				} else if s.Valid {
					fmt.Fprintf(g.stdout, "%s: valid, digest %s, %d anchors, %d revocations, %d deny entries, %d allowed signers\n",
						path, s.Digest, s.Anchors, s.Revocations, s.DenyEntries, s.AllowSigners)
				} else {
					fmt.Fprintf(g.stdout, "%s: invalid: %s\n", path, s.Error)
				}
			}
			if bad {
				return &exitError{code: ExitDenied}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func sortedKeys(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// readAllBounded reads what is left of r, refusing more than max bytes.
func readAllBounded(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("input is larger than %d bytes", max)
	}
	return b, nil
}

// writeFileAtomic writes through a temporary file and a rename, so a crash
// never leaves a truncated policy.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".vigil-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
