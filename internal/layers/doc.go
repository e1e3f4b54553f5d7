// Package layers holds, in its test, the import layering of the packages
// others link: a relying party verifying a session report and its proof of
// possession (ear, which links only the standard library, jwx v2 and
// veraison/ear; verdict), the session report issuer (token),
// the evidence verifier (evidence, report) and the API's wire types (api)
// must not link the policy engine (OPA), the store's implementations, the
// host collectors or the code-integrity engine. It has no code.
package layers
