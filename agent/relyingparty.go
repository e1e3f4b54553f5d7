package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/vigil-attest/vigil/api"
)

// The relying parties' credentials, through the admin API
// (ClientOptions.AdminToken): what `vigil admin rp` calls.

// CreateRelyingParty creates a relying party with scopes and returns it
// with its bearer token, shown this once (api.PathRelyingParties).
func (c *Client) CreateRelyingParty(ctx context.Context, name string, scopes []string) (*api.RelyingParty, error) {
	var out api.RelyingParty
	k := call{method: http.MethodPost, path: api.PathRelyingParties, contentType: "application/json",
		body: api.RelyingPartyRequest{Name: name, Scopes: scopes}, admin: true}
	if err := c.do(ctx, k, &out); err != nil {
		return nil, fmt.Errorf("create relying party %s: %w", name, err)
	}
	return &out, nil
}

// RelyingParties lists the relying parties, without their tokens.
func (c *Client) RelyingParties(ctx context.Context) (*api.RelyingPartyList, error) {
	var out api.RelyingPartyList
	if err := c.do(ctx, call{method: http.MethodGet, path: api.PathRelyingParties, admin: true}, &out); err != nil {
		return nil, fmt.Errorf("list relying parties: %w", err)
	}
	return &out, nil
}

// DeleteRelyingParty deletes a relying party; its token stops working.
func (c *Client) DeleteRelyingParty(ctx context.Context, name string) error {
	if !api.ValidRelyingPartyName(name) {
		return fmt.Errorf("delete relying party: invalid name %q", name)
	}
	path := strings.Replace(api.PathRelyingParty, "{name}", url.PathEscape(name), 1)
	if err := c.do(ctx, call{method: http.MethodDelete, path: path, body: struct{}{}, contentType: "application/json", admin: true}, nil); err != nil {
		return fmt.Errorf("delete relying party %s: %w", name, err)
	}
	return nil
}
