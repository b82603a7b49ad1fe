package storage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// The documents benchmarks. Set and get run through the engine (loopback
// HTTP, token, app lookup, scope check, value parsing) and as the direct
// driver call an app would make on its own collection, so the ratio is the
// engine's overhead:
//
//	go test -run '^$' -bench 'BenchmarkDocuments(Set|Get)' -count 6 . | tee docs.txt && benchstat docs.txt
//
// The query benchmarks load 100k and 200k documents (straight into the
// documents collection, in the stored layout of doc.go) and run only with
// CPOD_BENCH_LARGE=1; on the in-process FerretDB each query scans the whole
// collection, so give them time:
//
//	CPOD_BENCH_LARGE=1 go test -run '^$' -bench 'BenchmarkDocumentsQuery' -benchtime 3x -timeout 60m .
//
// CPODTEST_MONGO_URI runs all of them against another MongoDB server.

const benchValue = `{"status":"active","plan":"pro","createdAt":1700000000,"tags":{"a":1,"b":"two"},"name":"a value of some hundred bytes, give or take a few"}`

func BenchmarkDocumentsSet(b *testing.B) {
	srv, tok := benchServer(b)
	b.Run("engine", func(b *testing.B) {
		i := 0
		for b.Loop() {
			benchRequest(b, srv, "PUT", fmt.Sprintf("/v1/storage/db/bench/k%d", i%100), tok, benchValue, 200)
			i++
		}
	})
	b.Run("driver", func(b *testing.B) {
		coll := srv.Mongo.Collection("bench_direct")
		ctx := context.Background()
		var v bson.D
		if err := bson.UnmarshalExtJSON([]byte(benchValue), false, &v); err != nil {
			b.Fatal(err)
		}
		i := 0
		for b.Loop() {
			k := fmt.Sprintf("k%d", i%100)
			if _, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: k}}, bson.D{{Key: "_id", Value: k}, {Key: "value", Value: v}}, options.Replace().SetUpsert(true)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})

	// The write the engine sends, in its stored layout, without HTTP, auth
	// and parsing: the rest of the ratio is the layout (index, two forms).
	b.Run("driver-stored-layout", func(b *testing.B) {
		coll := srv.Mongo.Collection("cpod_documents")
		ctx := context.Background()
		var v bson.D
		if err := bson.UnmarshalExtJSON([]byte(benchValue), false, &v); err != nil {
			b.Fatal(err)
		}
		i := 0
		for b.Loop() {
			k := fmt.Sprintf("k%d", i%100)
			now := time.Now()
			_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "t1/apps/app-a/bench/" + k}}, bson.D{
				{Key: "$set", Value: bson.D{{Key: "json", Value: benchValue}, {Key: "v", Value: v}, {Key: "updated", Value: now}}},
				{Key: "$setOnInsert", Value: bson.D{{Key: "loc", Value: "t1/apps/app-a/"}, {Key: "coll", Value: "bench"}, {Key: "key", Value: k}, {Key: "created", Value: now}}},
			}, options.UpdateOne().SetUpsert(true))
			if err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

func BenchmarkDocumentsGet(b *testing.B) {
	srv, tok := benchServer(b)
	coll := srv.Mongo.Collection("bench_direct")
	ctx := context.Background()
	var v bson.D
	if err := bson.UnmarshalExtJSON([]byte(benchValue), false, &v); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		k := fmt.Sprintf("k%d", i)
		benchRequest(b, srv, "PUT", "/v1/storage/db/bench/"+k, tok, benchValue, 200)
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: k}, {Key: "value", Value: v}}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("engine", func(b *testing.B) {
		i := 0
		for b.Loop() {
			benchRequest(b, srv, "GET", fmt.Sprintf("/v1/storage/db/bench/k%d", i%100), tok, "", 200)
			i++
		}
	})
	b.Run("driver", func(b *testing.B) {
		i := 0
		for b.Loop() {
			var out bson.Raw
			if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("k%d", i%100)}}).Decode(&out); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// largeBenchServer starts a server for the query benchmarks, whose backend
// timeout is long enough for FerretDB's collection scans.
func largeBenchServer(b *testing.B) (*cpodtest.Server, string) {
	if os.Getenv("CPOD_BENCH_LARGE") == "" {
		b.Skip("set CPOD_BENCH_LARGE=1 to load 100k+ documents")
	}
	srv := cpodtest.NewServer(b, cpodtest.WithConfig(func(c *storage.Config) { c.BackendTimeout = 10 * time.Minute }))
	srv.RegisterApp(b, "app-a", allScopes...)
	return srv, srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
}

// insertStored writes n documents of collection coll at location loc
// straight into the documents collection, in the layout of doc.go, with
// key "k%07d" and value {"n": i % 1000, "grp": ...}.
func insertStored(b *testing.B, srv *cpodtest.Server, loc, coll string, n int) {
	b.Helper()
	ctx := context.Background()
	docs := srv.Mongo.Collection("cpod_documents")
	now := time.Now().UTC().Truncate(time.Millisecond)
	batch := make([]any, 0, 10000)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if _, err := docs.InsertMany(ctx, batch, options.InsertMany().SetOrdered(false)); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("k%07d", i)
		grp := []string{"a", "b", "c", "d"}[i%4]
		batch = append(batch, bson.D{
			{Key: "_id", Value: loc + coll + "/" + key},
			{Key: "loc", Value: loc}, {Key: "coll", Value: coll}, {Key: "key", Value: key},
			{Key: "json", Value: fmt.Sprintf(`{"n":%d,"grp":%q}`, i%1000, grp)},
			{Key: "v", Value: bson.D{{Key: "n", Value: int64(i % 1000)}, {Key: "grp", Value: grp}}},
			{Key: "created", Value: now}, {Key: "updated", Value: now},
		})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
}

// benchQuery runs one query and returns its nextCursor.
func benchQuery(b *testing.B, srv *cpodtest.Server, tok, coll, body string, wantItems int) string {
	b.Helper()
	r := do(b, srv, "POST", "/v1/storage/db/"+coll+"/query", tok, body)
	if r.status != 200 {
		b.Fatalf("query %s: %d %s", body, r.status, r.body)
	}
	var p struct {
		Items      []json.RawMessage
		NextCursor *string
	}
	decode(b, r, &p)
	if len(p.Items) != wantItems {
		b.Fatalf("query %s: %d items, want %d", body, len(p.Items), wantItems)
	}
	if p.NextCursor == nil {
		return ""
	}
	return *p.NextCursor
}

// BenchmarkDocumentsQueryPage compares page 200 with page 1 (20 items a
// page) over 100k documents, in key order and in value order.
func BenchmarkDocumentsQueryPage(b *testing.B) {
	srv, tok := largeBenchServer(b)
	insertStored(b, srv, "t1/apps/app-a/", "big", 100000)
	for _, order := range []struct{ name, sort string }{{"key", `{}`}, {"value", `{"n":-1,"grp":1}`}} {
		// Reach page 200 (after item 3980) in pages of 1000 and one of 980.
		cur := ""
		for _, n := range []int{1000, 1000, 1000, 980} {
			body := fmt.Sprintf(`{"sort":%s,"limit":%d}`, order.sort, n)
			if cur != "" {
				body = fmt.Sprintf(`{"cursor":%q,"limit":%d}`, cur, n)
			}
			cur = benchQuery(b, srv, tok, "big", body, n)
		}
		page200 := fmt.Sprintf(`{"cursor":%q,"limit":20}`, cur)
		b.Run(order.name+"/page1", func(b *testing.B) {
			for b.Loop() {
				benchQuery(b, srv, tok, "big", fmt.Sprintf(`{"sort":%s,"limit":20}`, order.sort), 20)
			}
		})
		b.Run(order.name+"/page200", func(b *testing.B) {
			for b.Loop() {
				benchQuery(b, srv, tok, "big", page200, 20)
			}
		})
	}
}

// BenchmarkDocumentsQueryNeighbors runs the same query on a 1k-document
// collection alone, then with 200k documents of other tenants in the same
// physical collection.
func BenchmarkDocumentsQueryNeighbors(b *testing.B) {
	srv, tok := largeBenchServer(b)
	insertStored(b, srv, "t1/apps/app-a/", "mine", 1000)
	query := `{"filter":{"grp":"b"},"sort":{"n":-1},"limit":20}`
	b.Run("alone", func(b *testing.B) {
		for b.Loop() {
			benchQuery(b, srv, tok, "mine", query, 20)
		}
	})
	for i := 0; i < 200; i++ {
		insertStored(b, srv, fmt.Sprintf("other%03d/apps/app-a/", i), "mine", 1000)
	}
	b.Run("200k-neighbors", func(b *testing.B) {
		for b.Loop() {
			benchQuery(b, srv, tok, "mine", query, 20)
		}
	})
}
