package gatekeeper_test

import (
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/vigil-attest/vigil/gatekeeper"
)

// A web service admits only healthy hosts on GET /orders: each request
// carries the host's session report and a fresh proof of possession
// signed by its TPM (vigil agent prove). docs/relying-party.md's
// five-minute example is this function's body (TestDocsExample).
func Example() {
	// The report CA, fetched once from the service's
	// /.well-known/vigil-ca.pem over a channel you trust.
	keys, err := gatekeeper.LoadCA("/etc/myapp/vigil-report-ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	gk, err := gatekeeper.New(gatekeeper.Options{
		Audience:  "app.example.com",         // the aud of the clients' proofs
		Keys:      keys,                      // or gatekeeper.NewJWKS(jwksURL, gatekeeper.JWKSOptions{})
		PublicURL: "https://app.example.com", // what clients address: the proofs' htu
	})
	if err != nil {
		log.Fatal(err)
	}
	orders := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := gatekeeper.FromContext(r.Context()) // the verified report, proof and level
		fmt.Fprintf(w, "hello %s, level %d\n", a.Report.Claims.AgentID, a.Level)
	})
	mux := http.NewServeMux()
	mux.Handle("GET /orders", gk.Require(gatekeeper.Policy{MinLevel: 2, MaxAge: 5 * time.Minute}, orders))
	srv := &http.Server{Addr: ":8443", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServeTLS("app.crt", "app.key"))
}
