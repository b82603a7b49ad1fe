package storage

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"sync"
	"time"

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
		return App{}, errorf(CodeInvalidRequest, "client_id must be 1 to 128 printable ASCII characters without '/' or '\\', and not '.' or '..'")
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
	if err := e.apps.ensureIndex(ctx); err != nil {
		return App{}, err
	}
	if _, err := e.apps.coll.InsertOne(ctx, app); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return App{}, errorf(CodeConflict, "an app with client_id %q exists already", app.ClientID)
		}
		return App{}, backendError("apps insert", err)
	}
	e.apps.forget(app.ClientID)
	return app, nil
}

// GetApp returns a registered app, or ErrNotFound.
func (e *Engine) GetApp(ctx context.Context, clientID string) (App, error) {
	var app App
	err := e.apps.coll.FindOne(ctx, bson.D{{Key: "client_id", Value: clientID}}).Decode(&app)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return App{}, errorf(CodeNotFound, "no app with this client_id")
	}
	if err != nil {
		return App{}, backendError("apps find", err)
	}
	return app, nil
}

// ListApps returns every registered app, ordered by client_id.
func (e *Engine) ListApps(ctx context.Context) ([]App, error) {
	cur, err := e.apps.coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "client_id", Value: 1}}))
	if err != nil {
		return nil, backendError("apps list", err)
	}
	apps := []App{}
	if err := cur.All(ctx, &apps); err != nil {
		return nil, backendError("apps list", err)
	}
	return apps, nil
}

// UpdateApp changes an app's name, declared scopes or type. A change to the
// declared scopes applies to tokens already issued within AppCacheTTL (at
// most one second) on every replica.
func (e *Engine) UpdateApp(ctx context.Context, clientID string, u AppUpdate) (App, error) {
	set := bson.D{{Key: "updated_at", Value: e.now().UTC().Truncate(time.Millisecond)}}
	if u.Name != nil {
		if err := validateAppText("name", *u.Name); err != nil {
			return App{}, err
		}
		set = append(set, bson.E{Key: "name", Value: *u.Name})
	}
	if u.AppType != nil {
		if err := validateAppText("app_type", *u.AppType); err != nil {
			return App{}, err
		}
		set = append(set, bson.E{Key: "app_type", Value: *u.AppType})
	}
	if u.DeclaredScopes != nil {
		scopes, err := validateScopes(*u.DeclaredScopes)
		if err != nil {
			return App{}, err
		}
		set = append(set, bson.E{Key: "declared_scopes", Value: scopes})
	}
	var app App
	err := e.apps.coll.FindOneAndUpdate(ctx, bson.D{{Key: "client_id", Value: clientID}},
		bson.D{{Key: "$set", Value: set}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&app)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return App{}, errorf(CodeNotFound, "no app with this client_id")
	}
	if err != nil {
		return App{}, backendError("apps update", err)
	}
	e.apps.forget(clientID)
	return app, nil
}

// DeleteApp removes an app; its tokens stop working within AppCacheTTL. Its
// data is kept. A missing app is ErrNotFound.
func (e *Engine) DeleteApp(ctx context.Context, clientID string) error {
	res, err := e.apps.coll.DeleteOne(ctx, bson.D{{Key: "client_id", Value: clientID}})
	if err != nil {
		return backendError("apps delete", err)
	}
	e.apps.forget(clientID)
	if res.DeletedCount == 0 {
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
	app, err := e.RegisterApp(c.ctx, app)
	if err != nil {
		return err
	}
	return c.json(http.StatusCreated, app)
}

func (e *Engine) handleListApps(c *call) error {
	if err := e.authorizeAdmin(c.r); err != nil {
		return err
	}
	apps, err := e.ListApps(c.ctx)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"items": apps})
}

func (e *Engine) handleGetApp(c *call) error {
	if err := e.authorizeAdmin(c.r); err != nil {
		return err
	}
	app, err := e.GetApp(c.ctx, c.params["client_id"])
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
	app, err := e.UpdateApp(c.ctx, c.params["client_id"], u)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, app)
}

func (e *Engine) handleDeleteApp(c *call) error {
	if err := e.authorizeAdmin(c.r); err != nil {
		return err
	}
	if err := e.DeleteApp(c.ctx, c.params["client_id"]); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// appRegistry is the MongoDB collection of apps with a short-lived cache of
// lookups. The cache is the only per-process state and it expires after ttl,
// so every replica sees a change within ttl.
type appRegistry struct {
	coll *mongo.Collection
	ttl  time.Duration

	mu      sync.Mutex
	cache   map[string]cachedApp
	indexed bool
}

type cachedApp struct {
	app   App
	found bool
	at    time.Time
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

func (a *appRegistry) forget(clientID string) {
	a.mu.Lock()
	delete(a.cache, clientID)
	a.mu.Unlock()
}

// lookup returns the app of a token; an unregistered client_id is
// invalid_token.
func (a *appRegistry) lookup(ctx context.Context, clientID string) (App, error) {
	now := time.Now()
	a.mu.Lock()
	c, ok := a.cache[clientID]
	a.mu.Unlock()
	if !ok || now.Sub(c.at) >= a.ttl {
		var app App
		err := a.coll.FindOne(ctx, bson.D{{Key: "client_id", Value: clientID}}).Decode(&app)
		switch {
		case err == nil:
			c = cachedApp{app: app, found: true, at: now}
		case errors.Is(err, mongo.ErrNoDocuments):
			c = cachedApp{at: now}
		default:
			return App{}, backendError("apps lookup", err)
		}
		if a.ttl > 0 {
			a.mu.Lock()
			if len(a.cache) > 10000 {
				clear(a.cache)
			}
			a.cache[clientID] = c
			a.mu.Unlock()
		}
	}
	if !c.found {
		return App{}, errorf(CodeInvalidToken, "the token's client_id is not a registered app")
	}
	return c.app, nil
}
