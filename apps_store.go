// The app registry's store: a small driver interface with a MongoDB driver
// (the collection Config.AppsCollection) and a SQLite driver (the table
// cpod_apps, see sqlite.go). apps.go validates, caches and answers.

package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// appStore keeps the registered apps.
//
// # Errors
//
// insert: a 409 conflict when the client_id exists. find, update, remove
// report a missing app with found false, never an error. Any backend
// failure is translated once, by the driver: 503 backend_unavailable when
// the backend did not answer, 500 internal otherwise.
type appStore interface {
	insert(ctx context.Context, app App) error
	find(ctx context.Context, clientID string) (app App, found bool, err error)
	list(ctx context.Context) ([]App, error)
	// update applies u (fields already checked) and the updated time, and
	// returns the app as stored after it.
	update(ctx context.Context, clientID string, u AppUpdate, now time.Time) (app App, found bool, err error)
	remove(ctx context.Context, clientID string) (found bool, err error)
	// ping is a real read of the registry, for /readyz.
	ping(ctx context.Context) error
}

// ---------------------------------------------------------------------------
// MongoDB

type mongoApps struct{ a *appRegistry }

var _ appStore = mongoApps{}

func (m mongoApps) insert(ctx context.Context, app App) error {
	if err := m.a.ensureIndex(ctx); err != nil {
		return err
	}
	if _, err := m.a.coll.InsertOne(ctx, app); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return errorf(CodeConflict, "an app with client_id %q exists already", app.ClientID)
		}
		return backendError("apps insert", err)
	}
	return nil
}

func (m mongoApps) find(ctx context.Context, clientID string) (App, bool, error) {
	var app App
	err := m.a.coll.FindOne(ctx, bson.D{{Key: "client_id", Value: clientID}}).Decode(&app)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return App{}, false, nil
	}
	if err != nil {
		return App{}, false, backendError("apps find", err)
	}
	return app, true, nil
}

func (m mongoApps) list(ctx context.Context) ([]App, error) {
	cur, err := m.a.coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "client_id", Value: 1}}))
	if err != nil {
		return nil, backendError("apps list", err)
	}
	apps := []App{}
	if err := cur.All(ctx, &apps); err != nil {
		return nil, backendError("apps list", err)
	}
	return apps, nil
}

func (m mongoApps) update(ctx context.Context, clientID string, u AppUpdate, now time.Time) (App, bool, error) {
	set := bson.D{{Key: "updated_at", Value: now}}
	if u.Name != nil {
		set = append(set, bson.E{Key: "name", Value: *u.Name})
	}
	if u.AppType != nil {
		set = append(set, bson.E{Key: "app_type", Value: *u.AppType})
	}
	if u.DeclaredScopes != nil {
		set = append(set, bson.E{Key: "declared_scopes", Value: *u.DeclaredScopes})
	}
	var app App
	err := m.a.coll.FindOneAndUpdate(ctx, bson.D{{Key: "client_id", Value: clientID}},
		bson.D{{Key: "$set", Value: set}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&app)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return App{}, false, nil
	}
	if err != nil {
		return App{}, false, backendError("apps update", err)
	}
	return app, true, nil
}

func (m mongoApps) remove(ctx context.Context, clientID string) (bool, error) {
	res, err := m.a.coll.DeleteOne(ctx, bson.D{{Key: "client_id", Value: clientID}})
	if err != nil {
		return false, backendError("apps delete", err)
	}
	return res.DeletedCount > 0, nil
}

// ping is a real query on the collection (a MongoDB proxy such as FerretDB
// answers ping without its storage).
func (m mongoApps) ping(ctx context.Context) error {
	err := m.a.coll.FindOne(ctx, bson.D{}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil
	}
	return err
}

// ---------------------------------------------------------------------------
// SQLite

type sqliteApps struct{ s *sqlStore }

var _ appStore = sqliteApps{}

func (q sqliteApps) insert(ctx context.Context, app App) error {
	scopes, _ := json.Marshal(app.DeclaredScopes)
	return q.s.write(ctx, func() error {
		res, err := q.s.db.ExecContext(ctx, `INSERT INTO cpod_apps (client_id, name, declared_scopes, app_type, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			app.ClientID, app.Name, string(scopes), app.AppType, app.CreatedAt.UnixMilli(), app.UpdatedAt.UnixMilli())
		if err != nil {
			return sqlError("apps insert", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errorf(CodeConflict, "an app with client_id %q exists already", app.ClientID)
		}
		return nil
	})
}

const sqlAppColumns = `client_id, name, declared_scopes, app_type, created_at, updated_at`

type rowScanner interface{ Scan(dest ...any) error }

func scanApp(r rowScanner) (App, error) {
	var app App
	var scopes string
	var created, updated int64
	if err := r.Scan(&app.ClientID, &app.Name, &scopes, &app.AppType, &created, &updated); err != nil {
		return App{}, err
	}
	if err := json.Unmarshal([]byte(scopes), &app.DeclaredScopes); err != nil {
		return App{}, err
	}
	app.CreatedAt, app.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return app, nil
}

func (q sqliteApps) find(ctx context.Context, clientID string) (App, bool, error) {
	if err := q.s.ready(ctx); err != nil {
		return App{}, false, err
	}
	app, err := scanApp(q.s.db.QueryRowContext(ctx, `SELECT `+sqlAppColumns+` FROM cpod_apps WHERE client_id = ?`, clientID))
	if errors.Is(err, sql.ErrNoRows) {
		return App{}, false, nil
	}
	if err != nil {
		return App{}, false, sqlError("apps find", err)
	}
	return app, true, nil
}

func (q sqliteApps) list(ctx context.Context) ([]App, error) {
	if err := q.s.ready(ctx); err != nil {
		return nil, err
	}
	rows, err := q.s.db.QueryContext(ctx, `SELECT `+sqlAppColumns+` FROM cpod_apps ORDER BY client_id`)
	if err != nil {
		return nil, sqlError("apps list", err)
	}
	defer rows.Close()
	apps := []App{}
	for rows.Next() {
		app, err := scanApp(rows)
		if err != nil {
			return nil, sqlError("apps list", err)
		}
		apps = append(apps, app)
	}
	return apps, sqlError("apps list", rows.Err())
}

func (q sqliteApps) update(ctx context.Context, clientID string, u AppUpdate, now time.Time) (App, bool, error) {
	var app App
	found := false
	err := q.s.write(ctx, func() error {
		tx, err := q.s.db.BeginTx(ctx, nil)
		if err != nil {
			return sqlError("apps update", err)
		}
		defer tx.Rollback()
		app, err = scanApp(tx.QueryRowContext(ctx, `SELECT `+sqlAppColumns+` FROM cpod_apps WHERE client_id = ?`, clientID))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return sqlError("apps update", err)
		}
		found = true
		if u.Name != nil {
			app.Name = *u.Name
		}
		if u.AppType != nil {
			app.AppType = *u.AppType
		}
		if u.DeclaredScopes != nil {
			app.DeclaredScopes = *u.DeclaredScopes
		}
		app.UpdatedAt = now
		scopes, _ := json.Marshal(app.DeclaredScopes)
		if _, err := tx.ExecContext(ctx, `UPDATE cpod_apps SET name = ?, declared_scopes = ?, app_type = ?, updated_at = ? WHERE client_id = ?`,
			app.Name, string(scopes), app.AppType, now.UnixMilli(), clientID); err != nil {
			return sqlError("apps update", err)
		}
		return sqlError("apps update", tx.Commit())
	})
	return app, found, err
}

func (q sqliteApps) remove(ctx context.Context, clientID string) (bool, error) {
	var n int64
	err := q.s.write(ctx, func() error {
		res, err := q.s.db.ExecContext(ctx, `DELETE FROM cpod_apps WHERE client_id = ?`, clientID)
		if err != nil {
			return sqlError("apps delete", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n > 0, err
}

func (q sqliteApps) ping(ctx context.Context) error {
	if err := q.s.ready(ctx); err != nil {
		return err
	}
	err := q.s.db.QueryRowContext(ctx, `SELECT 1 FROM cpod_apps LIMIT 1`).Scan(new(int))
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	return err
}
