package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-attest/vigil/integrity"
	"github.com/vigil-attest/vigil/reason"
)

func newInspectCmd(g *globalOptions) *cobra.Command {
	o := &verifyOptions{}
	cmd := &cobra.Command{
		Use:   "inspect [flags] FILE...",
		Short: "Print every signature of a file in detail (like osslsigncode verify or modinfo)",
		Long: `Inspect prints, for each signature of each file: where it sits (certificate-table
entry, nesting), the digest algorithm and signed digest, the signer, every embedded
certificate, the timestamp, the chain to an anchor, and the verdict with its
reasons under the given policy (the default policy has no anchors, so chains show
as untrusted unless --trust, --kernel or --policy supply them).

Exit code 0 when every file is allowed, 1 when any is denied, 2 on a usage or I/O error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Output != "text" && o.Output != "json" {
				return usageErr("--output must be text or json")
			}
			o.detail = true
			eng, err := o.build(g.logger)
			if err != nil {
				return err
			}
			var vs []*integrity.Verdict
			ioFailed := false
			for _, p := range args {
				v, err := eng.VerifyFileWith(cmd.Context(), p, o.Signature)
				if err != nil {
					ioFailed = true
				}
				vs = append(vs, v)
				if o.Output == "json" {
					enc := json.NewEncoder(g.stdout)
					enc.SetIndent("", "  ")
					enc.SetEscapeHTML(false)
					if err := enc.Encode(v); err != nil {
						return err
					}
				} else {
					writeInspectText(g.stdout, v)
				}
			}
			return verdictExit(vs, ioFailed)
		},
	}
	o.addFlags(cmd.Flags(), "text, json")
	cmd.Flags().StringVar(&o.Signature, "signature", "", "detached CMS signature (default FILE.p7s when present)")
	return cmd
}

func writeInspectText(w io.Writer, v *integrity.Verdict) {
	fmt.Fprintf(w, "File:          %s\n", v.Path)
	fmt.Fprintf(w, "Format:        %s\n", v.Format)
	fmt.Fprintf(w, "Size:          %d\n", v.Size)
	fmt.Fprintf(w, "SHA-256:       %s\n", v.SHA256)
	if v.Authentihash != nil {
		fmt.Fprintf(w, "Authentihash:  sha1 %s\n               sha256 %s\n", v.Authentihash.SHA1, v.Authentihash.SHA256)
	}
	fmt.Fprintf(w, "Signatures:    %d\n", len(v.Signatures))
	for _, s := range v.Signatures {
		kind := "primary"
		if s.Nested {
			kind = "nested"
		}
		fmt.Fprintf(w, "\n  Signature %d (%s, certificate entry %d)\n", s.Index, kind, s.Entry)
		fmt.Fprintf(w, "    Digest:      %s %s\n", s.DigestAlgorithm, s.Digest)
		if s.PageHashes {
			fmt.Fprintf(w, "    Page hashes: present, checked\n")
		}
		if s.Signer != nil {
			fmt.Fprintf(w, "    Signer:      %s\n", s.Signer.Subject)
			fmt.Fprintf(w, "    Issuer:      %s\n", s.Signer.Issuer)
			fmt.Fprintf(w, "    Serial:      %s\n", s.Signer.Serial)
			if s.Signer.TBSSHA256 != "" {
				fmt.Fprintf(w, "    TBS SHA-256: %s\n", s.Signer.TBSSHA256)
			}
		}
		if s.Timestamp != nil {
			fmt.Fprintf(w, "    Timestamp:   %s (%s)\n", s.Timestamp.Format(time.RFC3339), s.TimestampKind)
		} else {
			fmt.Fprintf(w, "    Timestamp:   none trusted\n")
		}
		for i, c := range s.Chain {
			label := "    Chain:       "
			if i > 0 {
				label = "                 <- "
			}
			fmt.Fprintf(w, "%s%s\n", label, c)
		}
		for _, c := range s.Certificates {
			fmt.Fprintf(w, "    Certificate: %s\n      issuer %s serial %s\n      valid %s .. %s, %s, eku %v\n",
				c.Subject, c.Issuer, c.Serial, c.NotBefore.Format(time.DateOnly), c.NotAfter.Format(time.DateOnly), c.SignatureAlgorithm, c.EKU)
		}
		fmt.Fprintf(w, "    Valid:       %v %s\n", s.Valid, codesOrNone(s.Reasons))
		for _, m := range s.Messages {
			fmt.Fprintf(w, "      - %s\n", m)
		}
	}
	verdict := "ALLOWED"
	if !v.Allowed {
		verdict = "DENIED"
	}
	fmt.Fprintf(w, "\nVerdict:       %s %s\n", verdict, codesOrNone(v.Reasons))
	if v.Error != "" {
		fmt.Fprintf(w, "Error:         %s\n", v.Error)
	}
	fmt.Fprintln(w)
}

func codesOrNone(cs []reason.Code) string {
	if len(cs) == 0 {
		return ""
	}
	return "(" + joinCodes(cs) + ")"
}
