package storage_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cpod/storage/cpodtest"
)

func TestAppsAPI(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	admin := srv.AdminToken
	app := `{"client_id":"app-myservice","name":"My Service","declared_scopes":["storage.private.read","storage.private.write","storage.user.read","storage.user.write"],"app_type":"service"}`
	cases := []struct {
		name, method, path, token string
		body                      any
		status                    int
		code                      string
		contains                  string
	}{
		{"register (seed's curl)", "POST", "/v1/oauth/apps", admin, app, 201, "", `"client_id":"app-myservice"`},
		{"duplicate", "POST", "/v1/oauth/apps", admin, app, 409, "conflict", ""},
		{"unknown scope", "POST", "/v1/oauth/apps", admin, `{"client_id":"x","declared_scopes":["storage.global.read"]}`, 400, "invalid_scope", ""},
		{"scope case variant", "POST", "/v1/oauth/apps", admin, `{"client_id":"x","declared_scopes":["Storage.Private.Read"]}`, 400, "invalid_scope", ""},
		{"wildcard scope", "POST", "/v1/oauth/apps", admin, `{"client_id":"x","declared_scopes":["storage.*"]}`, 400, "invalid_scope", ""},
		{"client_id with slash", "POST", "/v1/oauth/apps", admin, `{"client_id":"a/b","declared_scopes":[]}`, 400, "invalid_request", ""},
		{"client_id ..", "POST", "/v1/oauth/apps", admin, `{"client_id":"..","declared_scopes":[]}`, 400, "invalid_request", ""},
		{"no declared_scopes", "POST", "/v1/oauth/apps", admin, `{"client_id":"x"}`, 400, "invalid_request", ""},
		{"malformed", "POST", "/v1/oauth/apps", admin, `{"client_id":`, 400, "invalid_request", ""},
		{"no token", "POST", "/v1/oauth/apps", "", app, 401, "invalid_token", ""},
		{"wrong admin token", "POST", "/v1/oauth/apps", admin + "x", app, 401, "invalid_token", ""},
		{"a user token is not admin", "GET", "/v1/oauth/apps", srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-myservice", Scopes: allScopes}), nil, 401, "invalid_token", ""},
		{"list", "GET", "/v1/oauth/apps", admin, nil, 200, "", `"items":[{"client_id":"app-myservice"`},
		{"get", "GET", "/v1/oauth/apps/app-myservice", admin, nil, 200, "", `"declared_scopes":["storage.private.read","storage.private.write","storage.user.read","storage.user.write"]`},
		{"get missing", "GET", "/v1/oauth/apps/nope", admin, nil, 404, "not_found", ""},
		{"patch", "PATCH", "/v1/oauth/apps/app-myservice", admin, `{"name":"Renamed"}`, 200, "", `"name":"Renamed"`},
		{"patch unknown scope", "PATCH", "/v1/oauth/apps/app-myservice", admin, `{"declared_scopes":["storage.nope.read"]}`, 400, "invalid_scope", ""},
		{"patch missing", "PATCH", "/v1/oauth/apps/nope", admin, `{"name":"x"}`, 404, "not_found", ""},
		{"patch unknown field", "PATCH", "/v1/oauth/apps/app-myservice", admin, `{"client_id":"other"}`, 400, "invalid_request", ""},
		{"delete", "DELETE", "/v1/oauth/apps/app-myservice", admin, nil, 204, "", ""},
		{"delete again", "DELETE", "/v1/oauth/apps/app-myservice", admin, nil, 404, "not_found", ""},
		{"wrong method", "PUT", "/v1/oauth/apps", admin, nil, 405, "invalid_request", ""},
	}
	for _, tc := range cases {
		r := do(t, srv, tc.method, tc.path, tc.token, tc.body)
		if r.status != tc.status {
			t.Fatalf("%s: status %d, want %d: %s", tc.name, r.status, tc.status, r.body)
		}
		if tc.code != "" {
			wantStatus(t, r, tc.status, tc.code)
		}
		if !strings.Contains(string(r.body), tc.contains) {
			t.Fatalf("%s: body %s does not contain %s", tc.name, r.body, tc.contains)
		}
	}
}

// TestAppScopeChangeApplies states the rule: a change to an app's declared
// scopes applies to tokens already issued within one second.
func TestAppScopeChangeApplies(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", "storage.private.read", "storage.private.write")
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":1}`), 204, "")

	wantStatus(t, do(t, srv, "PATCH", "/v1/oauth/apps/app-a", srv.AdminToken, `{"declared_scopes":["storage.private.read"]}`), 200, "")
	changed := time.Now()
	waitFor(t, changed, func() bool {
		return do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":2}`).status == http.StatusForbidden
	})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":3}`), 403, "invalid_scope")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tok, nil), 200, "")

	wantStatus(t, do(t, srv, "DELETE", "/v1/oauth/apps/app-a", srv.AdminToken, nil), 204, "")
	deleted := time.Now()
	waitFor(t, deleted, func() bool { return do(t, srv, "GET", "/v1/storage/kv/k", tok, nil).status == http.StatusUnauthorized })
}

// waitFor polls cond until it holds, failing the test if a poll that began
// more than one second after since still finds it false (timed from its
// start, as waitWithin).
func waitFor(t *testing.T, since time.Time, cond func() bool) {
	t.Helper()
	for {
		polled := time.Now()
		if cond() {
			return
		}
		if polled.Sub(since) > time.Second {
			t.Fatalf("the change did not apply within one second (a request sent %v after it saw the old state)", polled.Sub(since))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
