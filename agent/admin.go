package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/vigil-attest/vigil/api"
)

// The admin API (ClientOptions.AdminToken): what `vigil admin` calls.

// ListAgents lists enrolled agents in ID order (api.PathAgents): status
// filters ("" for all), after is the cursor (the previous page's Next),
// limit caps the page (0: the service's default).
func (c *Client) ListAgents(ctx context.Context, status, after string, limit int) (*api.AgentList, error) {
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out api.AgentList
	if err := c.do(ctx, call{method: http.MethodGet, path: api.PathAgents, query: q, admin: true}, &out); err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	return &out, nil
}

// Agent returns one agent with its latest results (api.PathAgent).
func (c *Client) Agent(ctx context.Context, id string) (*api.AgentDetail, error) {
	var out api.AgentDetail
	if err := c.do(ctx, call{method: http.MethodGet, path: api.PathAgent, id: id, admin: true}, &out); err != nil {
		return nil, fmt.Errorf("agent %s: %w", id, err)
	}
	return &out, nil
}

// Approve approves a pending agent (api.PathApprove).
func (c *Client) Approve(ctx context.Context, id, reason string) (*api.Agent, error) {
	return c.setStatus(ctx, api.PathApprove, id, reason)
}

// Revoke revokes an agent: the service refuses it at once, on every
// replica (api.PathRevoke).
func (c *Client) Revoke(ctx context.Context, id, reason string) (*api.Agent, error) {
	return c.setStatus(ctx, api.PathRevoke, id, reason)
}

func (c *Client) setStatus(ctx context.Context, path, id, reason string) (*api.Agent, error) {
	var out api.Agent
	k := call{method: http.MethodPost, path: path, id: id, contentType: "application/json", body: api.AdminRequest{Reason: reason}, admin: true}
	if err := c.do(ctx, k, &out); err != nil {
		return nil, fmt.Errorf("%s %s: %w", path[len("/v1/agents/{id}/"):], id, err)
	}
	return &out, nil
}
