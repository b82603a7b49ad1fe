package storage

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// appsRoutes binds the app registry: admin-only, Bearer = an admin token.
func (e *Engine) appsRoutes() []route {
	return []route{
		{"POST", "/v1/oauth/apps", e.handleCreateApp},
		{"GET", "/v1/oauth/apps", e.handleListApps},
		{"GET", "/v1/oauth/apps/{client_id}", e.handleGetApp},
		{"PATCH", "/v1/oauth/apps/{client_id}", e.handlePatchApp},
		{"DELETE", "/v1/oauth/apps/{client_id}", e.handleDeleteApp},
	}
}

// App is a registered app. Its declared scopes cap what any of its tokens can
// do: the effective scopes of a token are its own intersected with these.
type App struct {
	ClientID       string    `json:"client_id" bson:"client_id"`
	Name           string    `json:"name" bson:"name"`
	DeclaredScopes []string  `json:"declared_scopes" bson:"declared_scopes"`
	AppType        string    `json:"app_type" bson:"app_type"`
	CreatedAt      time.Time `json:"created_at" bson:"created_at"`
	UpdatedAt      time.Time `json:"updated_at" bson:"updated_at"`
}

func (a App) declares(scope string) bool {
	for _, s := range a.DeclaredScopes {
		if s == scope {
			return true
		}
	}
	return false
}

// AppUpdate changes some fields of an app; nil fields stay as they are.
type AppUpdate struct {
	Name           *string   `json:"name"`
	DeclaredScopes *[]string `json:"declared_scopes"`
	AppType        *string   `json:"app_type"`
}

const maxAppBody = 64 << 10

// validateApp checks the fields an admin sends and normalises the scope list
// (sorted, without duplicates).
func validateScopes(scopes []string) ([]string, error) {
	out := make([]string, 0, len(scopes))
	seen := map[string]bool{}
	for _, s := range scopes {
		if !knownScope(s) {
			return nil, withStatus(errorf(CodeInvalidScope, "unknown scope %q; known scopes: %v", s, Scopes), http.StatusBadRequest)
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out, nil
}

func validateAppText(field, s string) error {
	if len(s) > 256 {
		return errorf(CodeInvalidRequest, "%s must be at most 256 bytes", field)
	}
	if !validText(s) {
		return errorf(CodeInvalidRequest, "%s must be UTF-8 without control characters", field)
	}
	return nil
}

// RegisterApp registers an app, as POST /v1/oauth/apps does. A client_id that
// exists already is ErrConflict; an unknown scope name is ErrInvalidScope.
func (e *Engine) RegisterApp(ctx context.Context, app App) (App, error) {
	if !validID(app.ClientID) {
		return App{}, errorf(CodeInvalidRequest, "client_id must be 1 to 128 printable ASCII characters without '/', '\\' or '%%', and not '.' or '..'")
	}
	scopes, err := validateScopes(app.DeclaredScopes)
	if err != nil {
		return App{}, err
	}
	if err := validateAppText("name", app.Name); err != nil {
		return App{}, err
	}
	if err := validateAppText("app_type", app.AppType); err != nil {
		return App{}, err
	}
	app.DeclaredScopes = scopes
	now := e.now().UTC().Truncate(time.Millisecond)
	app.CreatedAt, app.UpdatedAt = now, now
	if err := e.apps.store.insert(ctx, app); err != nil {
		return App{}, err
	}
	e.apps.forget(app.ClientID)
	return app, nil
}

// GetApp returns a registered app, or ErrNotFound.
func (e *Engine) GetApp(ctx context.Context, clientID string) (App, error) {
	app, found, err := e.apps.store.find(ctx, clientID)
	if err == nil && !found {
		err = errorf(CodeNotFound, "no app with this client_id")
	}
	return app, err
}

// ListApps returns every registered app, ordered by client_id.
func (e *Engine) ListApps(ctx context.Context) ([]App, error) {
	return e.apps.store.list(ctx)
}

// UpdateApp changes an app's name, declared scopes or type. A change to the
// declared scopes applies to tokens already issued within AppCacheTTL (at
// most one second) on every replica.
func (e *Engine) UpdateApp(ctx context.Context, clientID string, u AppUpdate) (App, error) {
	if u.Name != nil {
		if err := validateAppText("name", *u.Name); err != nil {
			return App{}, err
		}
	}
	if u.AppType != nil {
		if err := validateAppText("app_type", *u.AppType); err != nil {
			return App{}, err
		}
	}
	if u.DeclaredScopes != nil {
		scopes, err := validateScopes(*u.DeclaredScopes)
		if err != nil {
			return App{}, err
		}
		u.DeclaredScopes = &scopes
	}
	app, found, err := e.apps.store.update(ctx, clientID, u, e.now().UTC().Truncate(time.Millisecond))
	if err != nil {
		return App{}, err
	}
	if !found {
		return App{}, errorf(CodeNotFound, "no app with this client_id")
	}
	e.apps.forget(clientID)
	return app, nil
}

// DeleteApp removes an app; its tokens stop working within AppCacheTTL. Its
// data is kept. A missing app is ErrNotFound.
func (e *Engine) DeleteApp(ctx context.Context, clientID string) error {
	found, err := e.apps.store.remove(ctx, clientID)
	if err != nil {
		return err
	}
	e.apps.forget(clientID)
	if !found {
		return errorf(CodeNotFound, "no app with this client_id")
	}
	return nil
}

func (e *Engine) handleCreateApp(c *call) error {
	if err := e.authorizeAdmin(c.r); err != nil {
		return err
	}
	var app App
	if err := decodeJSON(c, maxAppBody, &app); err != nil {
		return err
	}
	if app.DeclaredScopes == nil {
		return errorf(CodeInvalidRequest, "declared_scopes is required")
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	app, err := e.RegisterApp(ctx, app)
	if err != nil {
		return err
	}
	return c.json(http.StatusCreated, app)
}

func (e *Engine) handleListApps(c *call) error {
	if err := e.authorizeAdmin(c.r); err != nil {
		return err
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	apps, err := e.ListApps(ctx)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"items": apps})
}

func (e *Engine) handleGetApp(c *call) error {
	if err := e.authorizeAdmin(c.r); err != nil {
		return err
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	app, err := e.GetApp(ctx, c.params["client_id"])
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, app)
}

func (e *Engine) handlePatchApp(c *call) error {
	if err := e.authorizeAdmin(c.r); err != nil {
		return err
	}
	var u AppUpdate
	if err := decodeJSON(c, maxAppBody, &u); err != nil {
		return err
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	app, err := e.UpdateApp(ctx, c.params["client_id"], u)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, app)
}

func (e *Engine) handleDeleteApp(c *call) error {
	if err := e.authorizeAdmin(c.r); err != nil {
		return err
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	if err := e.DeleteApp(ctx, c.params["client_id"]); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// appCacheSize caps each of the registry's two caches (registered apps, and
// client_ids found unregistered), so tokens of ever new client_ids cannot
// grow the process' memory, and cannot push the registered apps out.
const appCacheSize = 10000

// appRegistry is the MongoDB collection of apps with a short-lived cache of
// lookups. The cache is the only per-process state: each replica keeps its
// own, a fresh entry expires after ttl, so every replica sees a change within
// ttl. An entry stays a little longer (staleIfError) as a fallback for when
// MongoDB fails: see lookup.
type appRegistry struct {
	store        appStore
	coll         *mongo.Collection // MongoDB only
	ttl          time.Duration     // AppCacheTTL; 0: no cache (and no fallback)
	staleIfError time.Duration     // AppStaleIfError; 0: no fallback
	timeout      time.Duration     // BackendTimeout, bounds every lookup
	log          *slog.Logger
	clock        func() time.Time
	metrics      *metrics // counts failed lookups; nil without Config.Metrics

	found   *lru.Cache[string, *appEntry] // registered apps, by client_id
	missing *lru.Cache[string, time.Time] // unregistered client_ids: when seen so
	group   singleflight.Group            // one lookup in flight per client_id

	mu       sync.Mutex
	indexed  bool
	degraded bool // the latest lookup failed: MongoDB is failing
}

// appEntry is a registered app as a successful lookup that started at `at`
// returned it. After a failed lookup, retryAt (Unix nanoseconds) delays the
// next background one.
type appEntry struct {
	app     App
	at      time.Time
	retryAt atomic.Int64
}

func newAppRegistry(cfg Config, sql *sqlStore) *appRegistry {
	a := &appRegistry{
		ttl:          cfg.AppCacheTTL,
		staleIfError: cfg.AppStaleIfError,
		timeout:      cfg.BackendTimeout,
		log:          cfg.Logger,
		clock:        time.Now,
	}
	a.resize(appCacheSize)
	if cfg.Mongo != nil {
		a.coll = cfg.Mongo.Collection(cfg.AppsCollection)
		a.store = mongoApps{a}
	} else {
		a.store = sqliteApps{sql}
	}
	return a
}

// resize replaces the caches by empty ones holding at most n entries each.
func (a *appRegistry) resize(n int) {
	a.found, _ = lru.New[string, *appEntry](n)
	a.missing, _ = lru.New[string, time.Time](n)
}

// ensureIndex creates the unique index on client_id once per process; a
// failure is retried on the next call.
func (a *appRegistry) ensureIndex(ctx context.Context) error {
	a.mu.Lock()
	done := a.indexed
	a.mu.Unlock()
	if done {
		return nil
	}
	_, err := a.coll.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys:    bson.D{{Key: "client_id", Value: 1}},
		Options: options.Index().SetUnique(true).SetName("client_id_unique"),
	})
	if err != nil {
		return backendError("apps index", err)
	}
	a.mu.Lock()
	a.indexed = true
	a.mu.Unlock()
	return nil
}

// forget drops what this process knows of an app after it changed it, so
// neither the cache nor the fallback serves the old version.
func (a *appRegistry) forget(clientID string) {
	a.found.Remove(clientID)
	a.missing.Remove(clientID)
}

func (a *appRegistry) isDegraded() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.degraded
}

func (a *appRegistry) setDegraded(v bool) {
	a.mu.Lock()
	a.degraded = v
	a.mu.Unlock()
}

// errNotRegistered answers a token whose client_id is not an app.
func errNotRegistered() error {
	return errorf(CodeInvalidToken, "the token's client_id is not a registered app")
}

// lookup returns the app of a token; an unregistered client_id is
// invalid_token. Each lookup in MongoDB is bounded by the backend timeout and
// shared by the requests that need the same app meanwhile.
//
// Stale-if-error: when the lookup fails (MongoDB down, refusing, not
// answering in time, or answering an error), an app that a successful lookup
// returned less than staleIfError ago is served as that lookup returned it.
// While MongoDB keeps failing, such apps are served at once, and a single
// background lookup per app and per ttl finds out when MongoDB is back. An
// app that a successful lookup found changed or gone is never served in its
// old form: the entry is replaced or removed by that lookup (and by this
// process' own admin calls). Nor is a client_id known to be unregistered, or
// never seen by this process: those wait for the lookup and get 503.
func (a *appRegistry) lookup(ctx context.Context, clientID string) (App, error) {
	now := a.clock()
	if a.ttl > 0 {
		if at, ok := a.missing.Get(clientID); ok && now.Sub(at) < a.ttl {
			return App{}, errNotRegistered()
		}
		if e, ok := a.found.Get(clientID); ok {
			age := now.Sub(e.at)
			if age < a.ttl {
				return e.app, nil
			}
			if age < a.staleIfError && a.isDegraded() {
				if now.UnixNano() >= e.retryAt.Load() {
					a.fetchAsync(ctx, clientID)
				}
				return e.app, nil
			}
		}
	}
	app, found, err := a.fetch(ctx, clientID)
	switch {
	case err == nil && found:
		return app, nil
	case err == nil:
		return App{}, errNotRegistered()
	}
	if a.ttl > 0 {
		if e, ok := a.found.Peek(clientID); ok && a.clock().Sub(e.at) < a.staleIfError {
			return e.app, nil
		}
	}
	return App{}, err
}

// fetchResult is what one shared lookup in MongoDB returns.
type fetchResult struct {
	app   App
	found bool
}

// fetch looks the app up in MongoDB, sharing one call between concurrent
// requests for the same client_id. The call is bounded by the backend
// timeout and does not end when the request that started it goes away; each
// waiting request still stops at its own context's end.
func (a *appRegistry) fetch(ctx context.Context, clientID string) (App, bool, error) {
	select {
	case r := <-a.fetchAsync(ctx, clientID):
		if r.Err != nil {
			return App{}, false, r.Err
		}
		f := r.Val.(fetchResult)
		return f.app, f.found, nil
	case <-ctx.Done():
		return App{}, false, lookupError(ctx.Err())
	}
}

// fetchAsync starts the shared lookup of clientID unless one is in flight,
// and returns the channel of its result, which nobody needs to read.
func (a *appRegistry) fetchAsync(ctx context.Context, clientID string) <-chan singleflight.Result {
	ctx = context.WithoutCancel(ctx)
	return a.group.DoChan(clientID, func() (any, error) {
		start := a.clock()
		ctx, cancel := context.WithTimeout(ctx, a.timeout)
		defer cancel()
		app, found, err := a.store.find(ctx, clientID)
		if err != nil {
			a.setDegraded(true)
			if e, ok := a.found.Peek(clientID); ok {
				e.retryAt.Store(start.Add(a.ttl).UnixNano())
			}
			a.log.Warn("storage: app lookup failed", "client_id", clientID, "err", err)
			a.metrics.backendError(a.backend())
			return nil, lookupError(err)
		}
		a.setDegraded(false)
		if a.ttl > 0 {
			if found {
				a.found.Add(clientID, &appEntry{app: app, at: start})
				a.missing.Remove(clientID)
			} else {
				// Gone: never served again from the fallback.
				a.found.Remove(clientID)
				a.missing.Add(clientID, start)
			}
		}
		return fetchResult{app, found}, nil
	})
}

// lookupError translates a failed app lookup: whatever MongoDB did wrong,
// the caller can only try again later.
func lookupError(err error) error {
	return &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: fmt.Errorf("apps lookup: %w", err)}
}

// ping is the registry's readiness check: a real read of its store.
func (a *appRegistry) ping(ctx context.Context) error { return a.store.ping(ctx) }

// backend names the registry's backend, for metrics.
func (a *appRegistry) backend() string {
	if a.coll != nil {
		return backendMongo
	}
	return backendSQLite
}
