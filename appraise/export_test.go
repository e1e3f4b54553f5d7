package appraise

import (
	"context"
	"errors"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/vigil-attest/vigil/enclave"
	"github.com/vigil-attest/vigil/evidence"
)

// PolicySteps verifies req once and returns the two parts of the policy
// step, for the benchmarks: the input conversion, and the Rego
// evaluation of a converted input.
func PolicySteps(ctx context.Context, a *Appraiser, req *Request) (input func() (any, error), eval func(context.Context, any) error, err error) {
	pol := a.p.Current()
	kind := enclave.Kind(req.Agent.Enclave)
	_, imaSt, err := decodeState(req.State)
	if err != nil {
		return nil, nil, err
	}
	res := evidence.Verify(ctx, req.Evidence, evidence.Options{Nonce: req.Nonce, Enclave: kind, AK: req.Agent.AK, AKPublic: req.Agent.AKPublic, IMAState: imaSt})
	if !res.Valid {
		return nil, nil, errors.New("invalid evidence")
	}
	input = func() (any, error) {
		in, _, err := buildInput(req.Agent.ID, kind, res, reuse{}, req.Evidence.Report, pol.reference)
		return in, err
	}
	eval = func(ctx context.Context, in any) error {
		_, err := pol.eval(ctx, in.(ast.Value))
		return err
	}
	return input, eval, nil
}
