package storage_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cpod/storage/cpodtest"
)

// The engine on the SQLite store against its floor (issue 21's goals):
// the same work as SQL statements through database/sql on the same
// database in the same run, the statements the driver issues
// (documents_sqlite.go) written out by hand. The engine's figures include
// HTTP, auth, parsing and the JSON answer; the floor's only SQLite and
// database/sql. A "plain" floor is the query a hand-written app would send
// (json_extract only, no type order): what the type order costs.
//
//	go test -run '^$' -bench BenchmarkSQLiteDocuments -benchtime 2s -count 3 .

// sqliteBenchDocs is the collection's size, as in the comparison.
const sqliteBenchDocs = 20_000

// The SQL of the driver for the benchmark's query: filter
// {"status": s, "n": {"gte": x}}, sort {"n": -1}, limit 20 (the driver
// reads one more row to know whether a next page exists).
const (
	sqlbBracketN = `CASE json_type(v, '$."n"') WHEN 'integer' THEN 1 WHEN 'real' THEN 1 WHEN 'text' THEN 2 WHEN 'object' THEN 3 WHEN 'array' THEN 3 WHEN 'true' THEN 4 WHEN 'false' THEN 4 ELSE 0 END`
	sqlbSortN    = `CASE json_type(v, '$."n"') WHEN 'object' THEN cpod_sortkey(json_extract(v, '$."n"')) ELSE json_extract(v, '$."n"') END`
	sqlbWhere    = `loc = ? AND coll = ? AND (coalesce(json_type(v, '$."status"'), 'null') IN ('text') AND json_extract(v, '$."status"') = ?) AND (coalesce(json_type(v, '$."n"'), 'null') IN ('integer', 'real') AND json_extract(v, '$."n"') >= ?)`
	// sqlbAfter is the keyset condition after a position (n, key) in
	// the order n desc, key.
	sqlbAfter      = ` AND ((1 AND (` + sqlbBracketN + ` < 1 OR (` + sqlbBracketN + ` = 1 AND ` + sqlbSortN + ` < ?))) OR (1 AND ` + sqlbBracketN + ` = 1 AND ` + sqlbSortN + ` = ? AND key > ?))`
	sqlbOrder      = ` ORDER BY ` + sqlbBracketN + ` DESC, ` + sqlbSortN + ` DESC, key LIMIT 21`
	sqlbQuerySQL   = `SELECT key, json, ` + sqlbBracketN + `, ` + sqlbSortN + ` FROM cpod_documents WHERE ` + sqlbWhere + sqlbOrder
	sqlbPage10SQL  = `SELECT key, json, ` + sqlbBracketN + `, ` + sqlbSortN + ` FROM cpod_documents WHERE ` + sqlbWhere + sqlbAfter + sqlbOrder
	sqlbCountSQL   = `SELECT count(*) FROM cpod_documents WHERE ` + sqlbWhere
	sqlbGetSQL     = `SELECT json, ver, updated FROM cpod_documents WHERE loc = ? AND coll = ? AND key = ?`
	sqlbUpsertSQL  = `INSERT INTO cpod_documents (loc, coll, key, json, v, ver, updated, created) VALUES (?, ?, ?, ?, jsonb(?), ?, ?, ?) ON CONFLICT (loc, coll, key) DO UPDATE SET json = excluded.json, v = excluded.v, ver = excluded.ver, updated = excluded.updated`
	sqlbPlainWhere = `loc = ? AND coll = ? AND json_extract(v, '$.status') = ? AND json_extract(v, '$.n') >= ?`
	sqlbPlainSQL   = `SELECT key, json FROM cpod_documents WHERE ` + sqlbPlainWhere + ` ORDER BY json_extract(v, '$.n') DESC, key LIMIT 21`
	sqlbPlain10SQL = `SELECT key, json FROM cpod_documents WHERE ` + sqlbPlainWhere + ` AND (json_extract(v, '$.n') < ? OR json_extract(v, '$.n') = ? AND key > ?) ORDER BY json_extract(v, '$.n') DESC, key LIMIT 21`
	sqlbPlainCount = `SELECT count(*) FROM cpod_documents WHERE ` + sqlbPlainWhere
)

// The query: about 3,600 of the 20k documents match, so page 10 exists.
const (
	sqlbStatus = "s2"
	sqlbMinN   = 2000
	sqlbQuery  = `{"filter":{"status":"s2","n":{"gte":2000}},"sort":{"n":-1},"limit":20}`
	sqlbCount  = `{"filter":{"status":"s2","n":{"gte":2000}}}`
)

// sqlbDoc is document i of the collection.
func sqlbDoc(i int) string {
	return fmt.Sprintf(`{"status":"s%d","owner":"o%02d","n":%d,"title":"Document number %d, a title of some length"}`, i%5, i*7%50, i, i)
}

// sqliteBench is a server on the SQLite store with the collection, its
// location for the floor's statements, and a client that keeps enough
// connections for 16 clients.
type sqliteBench struct {
	srv       *cpodtest.Server
	tok       string
	client    *http.Client
	loc, coll string
	// page 10 of the query: the cursor of page 9's end for the engine,
	// its position (n, key) for the floor.
	cursor10 string
	posN     int64
	posKey   string
}

func newSQLiteBench(b *testing.B) *sqliteBench {
	b.Helper()
	s := &sqliteBench{srv: cpodtest.NewServer(b, cpodtest.WithSQLite()), coll: "docs"}
	s.srv.RegisterApp(b, "app-a", allScopes...)
	s.tok = s.srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	s.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	b.Cleanup(s.client.CloseIdleConnections)
	for lo := 0; lo < sqliteBenchDocs; lo += 500 {
		var ops []string
		for i := lo; i < lo+500; i++ {
			ops = append(ops, fmt.Sprintf(`{"op":"set","key":"k%05d","value":%s}`, i, sqlbDoc(i)))
		}
		s.must(b, "POST", "/v1/storage/db/docs/batch", `{"ops":[`+strings.Join(ops, ",")+`]}`)
	}
	if err := s.srv.SQL.QueryRow(`SELECT loc FROM cpod_documents WHERE coll = ? AND key = 'k00000'`, s.coll).Scan(&s.loc); err != nil {
		b.Fatal(err)
	}
	// Walk to page 10, and check that the floor's statements return what
	// the engine does.
	var page struct {
		Items []struct {
			Key   string
			Value struct{ N int64 }
		}
		NextCursor string
	}
	body := sqlbQuery
	for p := 1; p <= 10; p++ {
		if err := json.Unmarshal(s.must(b, "POST", "/v1/storage/db/docs/query", body), &page); err != nil {
			b.Fatal(err)
		}
		var engine []string
		for _, it := range page.Items {
			engine = append(engine, it.Key)
		}
		switch p {
		case 1:
			s.sameKeys(b, "page 1", engine, []string{sqlbQuerySQL, sqlbPlainSQL})
		case 10:
			s.sameKeys(b, "page 10", engine, []string{sqlbPage10SQL, sqlbPlain10SQL}, s.posN, s.posN, s.posKey)
		}
		if p == 9 {
			s.cursor10 = page.NextCursor
			last := page.Items[len(page.Items)-1]
			s.posN, s.posKey = last.Value.N, last.Key
		}
		body = fmt.Sprintf(`{"filter":{"status":"s2","n":{"gte":2000}},"sort":{"n":-1},"limit":20,"cursor":%q}`, page.NextCursor)
	}
	var n, plain int64
	if err := s.srv.SQL.QueryRow(sqlbCountSQL, s.loc, s.coll, sqlbStatus, sqlbMinN).Scan(&n); err != nil {
		b.Fatal(err)
	}
	if err := s.srv.SQL.QueryRow(sqlbPlainCount, s.loc, s.coll, sqlbStatus, sqlbMinN).Scan(&plain); err != nil {
		b.Fatal(err)
	}
	if got := strings.TrimSpace(string(s.must(b, "POST", "/v1/storage/db/docs/count", sqlbCount))); got != fmt.Sprintf(`{"count":%d}`, n) || n != plain || n < 200 {
		b.Fatalf("count: engine %s, floor %d, plain %d", got, n, plain)
	}
	return s
}

// sameKeys fails unless each statement returns the engine's page (and
// one more row: the driver's look-ahead).
func (s *sqliteBench) sameKeys(b *testing.B, what string, engine []string, stmts []string, after ...any) {
	b.Helper()
	args := append([]any{s.loc, s.coll, sqlbStatus, sqlbMinN}, after...)
	for _, stmt := range stmts {
		rows, err := s.srv.SQL.Query(stmt, args...)
		if err != nil {
			b.Fatal(err)
		}
		var keys []string
		for rows.Next() {
			cols, _ := rows.Columns()
			dest := make([]any, len(cols))
			var key string
			dest[0] = &key
			for i := 1; i < len(dest); i++ {
				dest[i] = new(any)
			}
			if err := rows.Scan(dest...); err != nil {
				b.Fatal(err)
			}
			keys = append(keys, key)
		}
		rows.Close()
		if len(keys) != 21 || !slices.Equal(keys[:20], engine) {
			b.Fatalf("%s: the floor's statement returns %v, the engine %v", what, keys, engine)
		}
	}
}

// must sends a request as the app and returns the body of its 200.
func (s *sqliteBench) must(b *testing.B, method, path, body string) []byte {
	b.Helper()
	status, res, err := s.send(method, path, body)
	if err != nil || status != 200 {
		b.Fatalf("%s %s: %d %s %v", method, path, status, res, err)
	}
	return res
}

func (s *sqliteBench) send(method, path, body string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.srv.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.tok)
	res, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(res.Body)
	return res.StatusCode, buf.Bytes(), err
}

// floorRows runs a query and reads every row as the driver does.
func floorRows(b *testing.B, db *sql.DB, stmt string, args ...any) {
	rows, err := db.QueryContext(context.Background(), stmt, args...)
	if err != nil {
		b.Error(err)
		return
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	dest := make([]any, len(cols))
	var key string
	var js []byte
	dest[0], dest[1] = &key, &js
	for i := 2; i < len(dest); i++ {
		dest[i] = new(any)
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			b.Error(err)
			return
		}
		n++
	}
	if err := rows.Err(); err != nil || n != 21 {
		b.Errorf("%d rows, %v", n, err)
	}
}

// sqlbOp is one measured operation of an interleaved benchmark.
type sqlbOp struct {
	name  string
	run   func(i int)
	times []time.Duration
}

// sqlbInterleave runs one of each op per iteration, in a new random order
// each time (load from other processes then falls on all alike), and
// reports each op's mean, and the engine's over the floor's (and over the
// plain floor's, when there is one) as ratios of means and of medians
// (-p50, steadier on a busy machine). ns/op is the sum of the ops.
func sqlbInterleave(b *testing.B, ops ...*sqlbOp) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	order := make([]int, len(ops))
	for i := range order {
		order[i] = i
	}
	i := 0
	for b.Loop() {
		rng.Shuffle(len(order), func(x, y int) { order[x], order[y] = order[y], order[x] })
		for _, k := range order {
			start := time.Now()
			ops[k].run(i)
			ops[k].times = append(ops[k].times, time.Since(start))
		}
		i++
	}
	mean := map[string]float64{}
	p50 := map[string]float64{}
	for _, o := range ops {
		var total time.Duration
		for _, d := range o.times {
			total += d
		}
		mean[o.name] = float64(total) / float64(len(o.times))
		slices.Sort(o.times)
		p50[o.name] = float64(o.times[len(o.times)/2])
		b.ReportMetric(mean[o.name], o.name+"-ns/op")
	}
	for _, f := range []string{"floor", "plain"} {
		if _, ok := mean[f]; ok {
			b.ReportMetric(mean["engine"]/mean[f], "engine/"+f)
			b.ReportMetric(p50["engine"]/p50[f], "engine/"+f+"-p50")
		}
	}
}

// BenchmarkSQLiteDocuments: the engine on the SQLite store and its floor,
// over 20k documents in one collection ({"status": 1 of 5, "owner": 1 of
// 50, "n": i, "title"}), in one run: a query filtering two fields
// (status equal, n a range; about 3,600 matches) sorted by n desc, limit
// 20, its page 1 and its page 10 (a cursor), the count of its matches, a
// get by key, a create, an overwrite by key, each interleaved with its
// floor; and the query's throughput at 16 concurrent clients (engine,
// floor, and the floor at the engine's concurrency, in turn).
func BenchmarkSQLiteDocuments(b *testing.B) {
	s := newSQLiteBench(b)
	db := s.srv.SQL
	ctx := context.Background()
	q := func(b *testing.B, body string) func(int) {
		return func(int) {
			if status, res, err := s.send("POST", "/v1/storage/db/docs/query", body); err != nil || status != 200 {
				b.Fatalf("query: %d %s %v", status, res, err)
			}
		}
	}
	b.Run("query-page1", func(b *testing.B) {
		sqlbInterleave(b,
			&sqlbOp{name: "engine", run: q(b, sqlbQuery)},
			&sqlbOp{name: "floor", run: func(int) { floorRows(b, db, sqlbQuerySQL, s.loc, s.coll, sqlbStatus, sqlbMinN) }},
			&sqlbOp{name: "plain", run: func(int) { floorRows(b, db, sqlbPlainSQL, s.loc, s.coll, sqlbStatus, sqlbMinN) }},
		)
	})
	b.Run("query-page10", func(b *testing.B) {
		body := fmt.Sprintf(`{"filter":{"status":"s2","n":{"gte":2000}},"sort":{"n":-1},"limit":20,"cursor":%q}`, s.cursor10)
		sqlbInterleave(b,
			&sqlbOp{name: "engine", run: q(b, body)},
			&sqlbOp{name: "floor", run: func(int) {
				floorRows(b, db, sqlbPage10SQL, s.loc, s.coll, sqlbStatus, sqlbMinN, s.posN, s.posN, s.posKey)
			}},
			&sqlbOp{name: "plain", run: func(int) {
				floorRows(b, db, sqlbPlain10SQL, s.loc, s.coll, sqlbStatus, sqlbMinN, s.posN, s.posN, s.posKey)
			}},
		)
	})
	b.Run("count", func(b *testing.B) {
		count := func(stmt string) func(int) {
			return func(int) {
				var n int64
				if err := db.QueryRowContext(ctx, stmt, s.loc, s.coll, sqlbStatus, sqlbMinN).Scan(&n); err != nil {
					b.Fatal(err)
				}
			}
		}
		sqlbInterleave(b,
			&sqlbOp{name: "engine", run: func(int) {
				if status, res, err := s.send("POST", "/v1/storage/db/docs/count", sqlbCount); err != nil || status != 200 {
					b.Fatalf("count: %d %s %v", status, res, err)
				}
			}},
			&sqlbOp{name: "floor", run: count(sqlbCountSQL)},
			&sqlbOp{name: "plain", run: count(sqlbPlainCount)},
		)
	})
	b.Run("get", func(b *testing.B) {
		rng := mrand.New(mrand.NewPCG(3, 4))
		sqlbInterleave(b,
			&sqlbOp{name: "engine", run: func(int) {
				key := fmt.Sprintf("k%05d", rng.IntN(sqliteBenchDocs))
				if status, res, err := s.send("GET", "/v1/storage/db/docs/"+key, ""); err != nil || status != 200 {
					b.Fatalf("get: %d %s %v", status, res, err)
				}
			}},
			&sqlbOp{name: "floor", run: func(int) {
				var js []byte
				var ver string
				var updated int64
				key := fmt.Sprintf("k%05d", rng.IntN(sqliteBenchDocs))
				if err := db.QueryRowContext(ctx, sqlbGetSQL, s.loc, s.coll, key).Scan(&js, &ver, &updated); err != nil {
					b.Fatal(err)
				}
			}},
		)
	})
	// The 16 clients run before the writes, on the 20k documents alone:
	// engine, floor and floor-4 in turn, 2*b.N queries each (ns/op is
	// the six phases together).
	b.Run("query-16-clients", func(b *testing.B) {
		b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		slots := make(chan struct{}, 4)
		phases := []struct {
			name string
			one  func() error
		}{
			{"engine", func() error {
				status, res, err := s.send("POST", "/v1/storage/db/docs/query", sqlbQuery)
				if err == nil && status != 200 {
					err = fmt.Errorf("query: %d %s", status, res)
				}
				return err
			}},
			{"floor", func() error {
				floorRows(b, db, sqlbQuerySQL, s.loc, s.coll, sqlbStatus, sqlbMinN)
				return nil
			}},
			// floor-4 runs at most 4 statements at once, as the engine
			// runs one tenant's reads on SQLite (half its 8 read slots,
			// Limits.MaxDocumentReads): on 2 cores 16 statements at once
			// get less done than 4.
			{"floor-4", func() error {
				slots <- struct{}{}
				defer func() { <-slots }()
				floorRows(b, db, sqlbQuerySQL, s.loc, s.coll, sqlbStatus, sqlbMinN)
				return nil
			}},
		}
		spent := map[string]time.Duration{}
		var errs atomic.Int64
		// In the order A B C C B A, so that a load that grows or falls
		// during the run weighs on each phase alike.
		for _, i := range []int{0, 1, 2, 2, 1, 0} {
			p := phases[i]
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := p.one(); err != nil {
						if errs.Add(1) == 1 {
							b.Error(err)
						}
					}
				}
			})
			spent[p.name] += time.Since(start)
		}
		qps := map[string]float64{}
		for _, p := range phases {
			qps[p.name] = float64(2*b.N) / spent[p.name].Seconds()
			b.ReportMetric(qps[p.name], p.name+"-q/s")
		}
		b.ReportMetric(float64(errs.Load()), "errors")
		// As the other ratios: the engine's time per query over the floor's.
		b.ReportMetric(qps["floor"]/qps["engine"], "engine/floor")
		b.ReportMetric(qps["floor-4"]/qps["engine"], "engine/floor-4")
	})
	b.Run("create", func(b *testing.B) {
		sqlbInterleave(b,
			&sqlbOp{name: "engine", run: func(i int) {
				if status, res, err := s.send("PUT", fmt.Sprintf("/v1/storage/db/docs/new-e%07d", i), sqlbDoc(i)); err != nil || status != 200 {
					b.Fatalf("create: %d %s %v", status, res, err)
				}
			}},
			&sqlbOp{name: "floor", run: func(i int) { s.floorSet(b, fmt.Sprintf("new-f%07d", i), sqlbDoc(i)) }},
		)
	})
	b.Run("overwrite", func(b *testing.B) {
		rng := mrand.New(mrand.NewPCG(5, 6))
		sqlbInterleave(b,
			&sqlbOp{name: "engine", run: func(i int) {
				key := fmt.Sprintf("k%05d", rng.IntN(sqliteBenchDocs))
				if status, res, err := s.send("PUT", "/v1/storage/db/docs/"+key, sqlbDoc(i)); err != nil || status != 200 {
					b.Fatalf("overwrite: %d %s %v", status, res, err)
				}
			}},
			&sqlbOp{name: "floor", run: func(i int) { s.floorSet(b, fmt.Sprintf("k%05d", rng.IntN(sqliteBenchDocs)), sqlbDoc(i)) }},
		)
	})
}

// floorSet is the driver's unconditional set: one upsert (the values here
// are their own query form).
func (s *sqliteBench) floorSet(b *testing.B, key, value string) {
	now := time.Now().UnixMilli()
	if _, err := s.srv.SQL.ExecContext(context.Background(), sqlbUpsertSQL, s.loc, s.coll, key, value, value, "0123456789abcdef", now, now); err != nil {
		b.Fatal(err)
	}
}
