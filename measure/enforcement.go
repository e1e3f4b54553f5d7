package measure

import (
	"context"
	"strings"

	"github.com/vigil-attest/vigil/hostfs"
)

const securityfs = "/sys/kernel/security"

func (m *Measurer) collectEnforcement(_ context.Context, src hostfs.Source, cmdline string) Enforcement {
	e := Enforcement{Section: Section{Status: StatusOK}, LSM: []string{}, AppArmorProfiles: map[string]int64{}}
	if v, err := readLine(src, "/sys/module/module/parameters/sig_enforce"); err == nil {
		e.SigEnforce, e.SigEnforceSource = v == "Y" || v == "1", "sysfs"
	}
	if v, ok := cmdlineValue(cmdline, "module.sig_enforce"); ok && !e.SigEnforce {
		if on := v == "" || v == "1" || v == "Y" || v == "y"; on {
			e.SigEnforce, e.SigEnforceSource = true, "cmdline"
		}
	}
	e.Lockdown = lockdownMode(src)
	e.ModulesDisabled = readInt(src, "/proc/sys/kernel/modules_disabled")
	e.KexecLoadDisabled = readInt(src, "/proc/sys/kernel/kexec_load_disabled")
	e.KptrRestrict = readInt(src, "/proc/sys/kernel/kptr_restrict")
	e.DmesgRestrict = readInt(src, "/proc/sys/kernel/dmesg_restrict")
	e.PerfEventParanoid = readInt(src, "/proc/sys/kernel/perf_event_paranoid")
	e.UnprivilegedBPFDisabled = readInt(src, "/proc/sys/kernel/unprivileged_bpf_disabled")
	e.PtraceScope = readInt(src, "/proc/sys/kernel/yama/ptrace_scope")
	if v, err := readLine(src, securityfs+"/lsm"); err == nil {
		for _, l := range strings.Split(v, ",") {
			if l = strings.TrimSpace(l); l != "" {
				e.LSM = append(e.LSM, l)
			}
		}
	}
	e.SELinux = "disabled"
	if v, err := readLine(src, "/sys/fs/selinux/enforce"); err == nil {
		if v == "1" {
			e.SELinux = "enforcing"
		} else {
			e.SELinux = "permissive"
		}
	}
	e.AppArmor = "disabled"
	if v, err := readLine(src, "/sys/module/apparmor/parameters/enabled"); err == nil && (v == "Y" || v == "1") {
		e.AppArmor = "enabled"
		if b, err := src.ReadFile(securityfs + "/apparmor/profiles"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				// "name (mode)"
				if i := strings.LastIndexByte(line, '('); i >= 0 && strings.HasSuffix(line, ")") {
					e.AppArmorProfiles[line[i+1:len(line)-1]]++
				}
			}
		}
	}
	if v, err := readLine(src, securityfs+"/ipe/enforce"); err == nil {
		ipe := &IPE{Enforce: v == "1"}
		ipe.ActivePolicy, _ = readLine(src, securityfs+"/ipe/active_policy")
		e.IPE = ipe
	}
	for _, p := range []string{securityfs + "/evm", securityfs + "/integrity/evm/evm"} {
		if v := readInt(src, p); v != nil {
			x := *v
			e.EVM = &EVM{
				Value: x, HMAC: x&1 != 0, X509: x&2 != 0, MetadataWrites: x&4 != 0,
				SetupComplete: x&0x80000000 != 0,
			}
			break
		}
	}
	return e
}

// lockdownMode reads "none [integrity] confidentiality": the bracketed
// mode when it is one of the kernel's, else LockdownUnknown.
func lockdownMode(src hostfs.Source) string {
	v, err := readLine(src, securityfs+"/lockdown")
	if err != nil {
		if _, err := src.ReadDir(securityfs); err == nil {
			// securityfs is mounted but the kernel has no lockdown LSM.
			return LockdownNone
		}
		return LockdownUnknown
	}
	for _, f := range strings.Fields(v) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			switch m := strings.Trim(f, "[]"); m {
			case LockdownNone, LockdownIntegrity, LockdownConfidentiality:
				return m
			}
			return LockdownUnknown
		}
	}
	return LockdownUnknown
}

// debugParams are command-line parameters that enable a kernel debugger.
var debugParams = []string{"kgdboc", "kgdbwait", "kgdbdbgp", "ekgdboc", "kgdbcon", "kdb"}

func (m *Measurer) collectDebug(_ context.Context, src hostfs.Source, cmdline string, e *Enforcement) Debug {
	d := Debug{Section: Section{Status: StatusOK}, Evidence: []string{}, RelaxedSigning: []string{}}
	for _, p := range debugParams {
		if v, ok := cmdlineValue(cmdline, p); ok {
			d.KernelDebugging = true
			if v != "" {
				d.Evidence = append(d.Evidence, "cmdline:"+p+"="+v)
			} else {
				d.Evidence = append(d.Evidence, "cmdline:"+p)
			}
		}
	}
	if v, err := readLine(src, "/sys/module/kgdboc/parameters/kgdboc"); err == nil && v != "" {
		d.KernelDebugging = true
		d.Evidence = append(d.Evidence, "kgdboc:"+v)
	}
	if v, err := readLine(src, "/sys/module/kdb/parameters/enable"); err == nil && v != "0" && v != "" {
		d.Evidence = append(d.Evidence, "kdb_enable:"+v)
	}
	d.Sysrq = readInt(src, "/proc/sys/kernel/sysrq")
	if d.Sysrq != nil && *d.Sysrq == 1 {
		d.Evidence = append(d.Evidence, "sysrq:1")
	}
	if e.Lockdown == LockdownNone {
		d.RelaxedSigning = append(d.RelaxedSigning, "lockdown=none")
	} else if v, ok := cmdlineValue(cmdline, "lockdown"); ok && v == "none" {
		d.RelaxedSigning = append(d.RelaxedSigning, "lockdown=none")
	}
	if v, ok := cmdlineValue(cmdline, "module.sig_enforce"); ok && (v == "0" || v == "N" || v == "n") {
		d.RelaxedSigning = append(d.RelaxedSigning, "module.sig_enforce=0")
	}
	if v, ok := cmdlineValue(cmdline, "efi"); ok {
		for _, o := range strings.Split(v, ",") {
			if o == "debug" {
				d.RelaxedSigning = append(d.RelaxedSigning, "efi=debug")
			}
		}
	}
	return d
}
