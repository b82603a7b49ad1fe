// Importing a MongoDB store into a SQLite one: how the embedded store
// takes over the documents and apps an earlier version kept in FerretDB
// (package embedded calls it once, on start).

package storage

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ImportCounts is what ImportMongo copied.
type ImportCounts struct {
	Documents int64
	Apps      int64
}

// ImportMongo copies every document and app the engine stored in src (in
// either documents layout, with the default collection names) into dst, a
// SQLite database for Config.SQL, keeping keys, values (byte for byte),
// versions (so ETags stay valid) and dates. A document or app that dst
// holds already is overwritten, so an import that stopped midway is
// finished by running it again. It reads src a batch at a time and writes
// each batch in one transaction.
func ImportMongo(ctx context.Context, src *mongo.Database, dst *sql.DB) (ImportCounts, error) {
	var n ImportCounts
	s := newSQLStore(dst, slog.New(slog.DiscardHandler))
	if err := s.ready(ctx); err != nil {
		return n, err
	}
	// A parser with the default limits but no structure caps: a value an
	// earlier version accepted is imported whatever its shape.
	cfg := Config{}
	cfg.Limits.setDefaults()
	cfg.Limits.MaxDocumentSize = mongoMaxDocument
	cfg.Limits.MaxDocumentNodes, cfg.Limits.MaxDocumentArrayItems, cfg.Limits.MaxDocumentObjectFields = 1<<31-1, 1<<31-1, 1<<31-1
	cfg.Limits.MaxDocumentDepth = MaxDocumentDepthCeiling
	d := &documents{e: &Engine{cfg: cfg}}

	names, err := src.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return n, fmt.Errorf("import: list collections: %w", err)
	}
	for _, name := range names {
		if name != "cpod_documents" && !strings.HasPrefix(name, "cpod_documents.") {
			continue
		}
		if err := importDocuments(ctx, d, src.Collection(name), dst, &n.Documents); err != nil {
			return n, fmt.Errorf("import %s: %w", name, err)
		}
	}
	cur, err := src.Collection("cpod_apps").Find(ctx, bson.D{})
	if err != nil {
		return n, fmt.Errorf("import apps: %w", err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var app App
		if err := cur.Decode(&app); err != nil {
			return n, fmt.Errorf("import apps: %w", err)
		}
		scopes := "[]"
		if len(app.DeclaredScopes) > 0 {
			scopes = `["` + strings.Join(app.DeclaredScopes, `","`) + `"]` // scope names are checked words
		}
		if _, err := dst.ExecContext(ctx, `INSERT INTO cpod_apps (client_id, name, declared_scopes, app_type, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET name = excluded.name,
			declared_scopes = excluded.declared_scopes, app_type = excluded.app_type,
			created_at = excluded.created_at, updated_at = excluded.updated_at`,
			app.ClientID, app.Name, scopes, app.AppType, app.CreatedAt.UnixMilli(), app.UpdatedAt.UnixMilli()); err != nil {
			return n, fmt.Errorf("import apps: %w", err)
		}
		n.Apps++
	}
	return n, cur.Err()
}

// importDocuments copies one physical collection's documents.
func importDocuments(ctx context.Context, d *documents, c *mongo.Collection, dst *sql.DB, n *int64) error {
	cur, err := c.Find(ctx, bson.D{}, options.Find().SetBatchSize(500).SetProjection(bson.D{
		{Key: fieldLoc, Value: 1}, {Key: fieldColl, Value: 1}, {Key: fieldKey, Value: 1}, {Key: fieldJSON, Value: 1},
		{Key: fieldVersion, Value: 1}, {Key: fieldUpdated, Value: 1}, {Key: fieldCreated, Value: 1},
	}))
	if err != nil {
		return err
	}
	defer cur.Close(ctx)
	type row struct {
		loc, coll, key string
		json, form     []byte
		ver            string
		updated, creat int64
	}
	var batch []row
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		tx, err := dst.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for _, r := range batch {
			if _, err := tx.ExecContext(ctx, `INSERT INTO cpod_documents (loc, coll, key, json, v, ver, updated, created)
				VALUES (?, ?, ?, ?, jsonb(?), ?, ?, ?)
				ON CONFLICT (loc, coll, key) DO UPDATE SET json = excluded.json, v = excluded.v, ver = excluded.ver,
				updated = excluded.updated, created = excluded.created`,
				r.loc, r.coll, r.key, r.json, r.form, r.ver, r.updated, r.creat); err != nil {
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		*n += int64(len(batch))
		batch = batch[:0]
		return nil
	}
	for cur.Next(ctx) {
		raw := cur.Current
		loc, ok1 := raw.Lookup(fieldLoc).StringValueOK()
		coll, ok2 := raw.Lookup(fieldColl).StringValueOK()
		key, ok3 := raw.Lookup(fieldKey).StringValueOK()
		js, ok4 := raw.Lookup(fieldJSON).StringValueOK()
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return fmt.Errorf("a stored document lacks loc, coll, key or json")
		}
		v, err := d.parseValue([]byte(js))
		if err != nil {
			return fmt.Errorf("document %q of %q: %w", key, coll, err)
		}
		g := tagOf(raw)
		created, ok := raw.Lookup(fieldCreated).DateTimeOK()
		if !ok {
			created = g.updated
		}
		if g.updated == 0 {
			g.updated = time.Now().UnixMilli()
		}
		batch = append(batch, row{loc, coll, key, v.json, queryForm(v.bson), g.ver, g.updated, created})
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := cur.Err(); err != nil {
		return err
	}
	return flush()
}
