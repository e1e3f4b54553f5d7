package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/reason"
)

// ruleHelp describes each reason code for SARIF rule metadata.
var ruleHelp = map[reason.Code]string{
	reason.Unsigned:          "The file carries no signature.",
	reason.Malformed:         "The file or its signature does not parse.",
	reason.DigestMismatch:    "The signed digest differs from the file's: the file was modified after signing.",
	reason.BadSignature:      "The cryptographic signature does not verify.",
	reason.UntrustedChain:    "The signer does not chain to a trust anchor of the policy.",
	reason.WrongEKU:          "A certificate lacks an extended key usage the policy requires.",
	reason.WeakAlgorithm:     "A digest is weaker than the policy minimum.",
	reason.Expired:           "A certificate had expired at the signing time.",
	reason.NotYetValid:       "A certificate was not yet valid at the signing time.",
	reason.Revoked:           "A certificate of the chain is revoked.",
	reason.BlocklistedHash:   "The file's hash or Authenticode hash is on a deny list.",
	reason.BlocklistedSigner: "A certificate of the chain is on a deny list.",
	reason.SignerNotAllowed:  "The signer is not among the policy's allowed publishers.",
	reason.Unsupported:       "The signature uses a construct Vigil does not support.",
	reason.BadTimestamp:      "A timestamp is present but not trusted.",
	reason.SelfTimestamp:     "A timestamp was made by the signer's own key or chain, not by a timestamping authority.",
	reason.FutureTimestamp:   "A timestamp claims a time later than the check time.",
	reason.BadCertTable:      "The PE certificate table holds an entry that is not a supported Authenticode signature.",
}

type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID               string       `json:"id"`
	ShortDescription sarifMessage `json:"shortDescription"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	Level     string          `json:"level"`
	Message   sarifMessage    `json:"message"`
	Locations []sarifLocation `json:"locations"`
}

type sarifLocation struct {
	PhysicalLocation struct {
		ArtifactLocation struct {
			URI string `json:"uri"`
		} `json:"artifactLocation"`
	} `json:"physicalLocation"`
}

// writeSARIF emits one result per reason of each denied file.
func writeSARIF(w io.Writer, vs []*integrity.Verdict) error {
	run := sarifRun{Tool: sarifTool{Driver: sarifDriver{Name: "vigil", InformationURI: "https://github.com/vigil-attest/vigil"}}, Results: []sarifResult{}}
	for _, c := range reason.All() {
		run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRule{ID: string(c), ShortDescription: sarifMessage{Text: ruleHelp[c]}})
	}
	for _, v := range vs {
		if v.Allowed {
			continue
		}
		for _, c := range v.Reasons {
			r := sarifResult{RuleID: string(c), Level: "error", Message: sarifMessage{Text: fmt.Sprintf("%s denied: %s", v.Path, ruleHelp[c])}}
			var loc sarifLocation
			loc.PhysicalLocation.ArtifactLocation.URI = filepath.ToSlash(v.Path)
			r.Locations = []sarifLocation{loc}
			run.Results = append(run.Results, r)
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{Schema: "https://json.schemastore.org/sarif-2.1.0.json", Version: "2.1.0", Runs: []sarifRun{run}})
}
