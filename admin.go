package storage

import (
	"context"
	"net/http"
)

// adminRoutes binds the data lifecycle endpoints: erase and export, for
// the operator (Bearer = an admin token, as /v1/oauth/apps). They never
// answer CORS (cors.go serves /v1/storage/ only).
//
// The tenant, user and app of the path are checked with the token id rule
// (validID: 1 to 128 bytes of printable ASCII without '/', '\' or '%', not
// "." or "..", after the router's one percent-decoding), so no path can
// name a location that is not exactly that tenant's, user's or app's:
// anything else is 400 invalid_request before any backend call. The
// locations come from tiers.go (tenantPrefix, userPrefix, appPrefix), the
// same functions Resolve uses, and every one ends with '/', so erasing
// tenant "t1" or user "u1" never touches "t10" or "u10".
func (e *Engine) adminRoutes() []route {
	return []route{
		{"DELETE", "/v1/admin/tenants/{tenant}/users/{user}/data", e.handleEraseUser},
		{"GET", "/v1/admin/tenants/{tenant}/users/{user}/export", e.handleExportUser},
		{"DELETE", "/v1/admin/tenants/{tenant}/apps/{app}/data", e.handleEraseApp},
		{"DELETE", "/v1/admin/tenants/{tenant}", e.handleEraseTenant},
	}
}

// adminIDs authorizes an admin call and returns the path ids it names,
// each checked with validID.
func (e *Engine) adminIDs(c *call, names ...string) ([]string, error) {
	if err := e.authorizeAdmin(c.r); err != nil {
		return nil, err
	}
	ids := make([]string, len(names))
	for i, n := range names {
		v := c.params[n]
		if !validID(v) {
			return nil, errorf(CodeInvalidRequest, "the %s id must be 1 to 128 printable ASCII characters without '/', '\\' or '%%', and not '.' or '..'", n)
		}
		ids[i] = v
	}
	return ids, nil
}

// handleEraseUser erases a user's user-tier data in a tenant.
func (e *Engine) handleEraseUser(c *call) error {
	ids, err := e.adminIDs(c, "tenant", "user")
	if err != nil {
		return err
	}
	return e.answerErase(c, userPrefix(ids[0], ids[1]))
}

// handleEraseApp erases an app's private data in a tenant.
func (e *Engine) handleEraseApp(c *call) error {
	ids, err := e.adminIDs(c, "tenant", "app")
	if err != nil {
		return err
	}
	return e.answerErase(c, appPrefix(ids[0], ids[1]))
}

// handleEraseTenant erases everything of a tenant: every app's private
// data, every user's data and the shared tier.
func (e *Engine) handleEraseTenant(c *call) error {
	ids, err := e.adminIDs(c, "tenant")
	if err != nil {
		return err
	}
	return e.answerErase(c, tenantPrefix(ids[0]))
}

// answerErase runs an erase of the location prefix and answers its counts.
// An erase that stops midway (a backend failure, the client gone) answers
// the error, whose message says what was removed so far; calling again
// finishes it.
func (e *Engine) answerErase(c *call, prefix string) error {
	n, err := e.erase(c.ctx, prefix, eraseOptions{})
	e.erased(c, prefix)
	if err == nil {
		// Nothing is left under prefix: neither is its usage (usage.go).
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), e.cfg.BackendTimeout)
		err = e.usage.clear(ctx, prefix)
		cancel()
	}
	if err != nil {
		ee := toError(err)
		cp := *ee
		cp.Message = ee.Message + "; the erase stopped midway (" + n.String() + " removed so far): call again to finish it"
		return &cp
	}
	return c.json(http.StatusOK, n)
}

// handleExportUser streams a tar of a user's user-tier data in a tenant
// (see export.go).
func (e *Engine) handleExportUser(c *call) error {
	ids, err := e.adminIDs(c, "tenant", "user")
	if err != nil {
		return err
	}
	return e.export(c, userPrefix(ids[0], ids[1]))
}
