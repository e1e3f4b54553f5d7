package measure

import (
	"context"

	"github.com/vigil-attest/vigil/hostfs"
)

type Kernel struct {
	Section
	Release string `json:"release"`
	Cmdline string `json:"cmdline"`
}
type Modules struct{ Section }
type Taint struct{ Section }
type Enforcement struct{ Section }
type Debug struct{ Section }
type Processes struct{ Section }
type CriticalProcess struct{}

func (m *Measurer) collectKernel(ctx context.Context, src hostfs.Source) Kernel { return Kernel{} }
func (m *Measurer) collectModules(ctx context.Context, src hostfs.Source, rel string) Modules {
	return Modules{}
}
func (m *Measurer) collectTaint(ctx context.Context, src hostfs.Source, mods *Modules) Taint {
	return Taint{}
}
func (m *Measurer) collectEnforcement(ctx context.Context, src hostfs.Source, cmdline string) Enforcement {
	return Enforcement{}
}
func (m *Measurer) collectDebug(ctx context.Context, src hostfs.Source, cmdline string, e *Enforcement) Debug {
	return Debug{}
}
func (m *Measurer) collectProcesses(ctx context.Context, src hostfs.Source) Processes {
	return Processes{}
}
