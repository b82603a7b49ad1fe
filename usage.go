package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Quotas and usage (design.md, "Quotas and usage").
//
// Usage is kept per tenant and per location (an app's private tier, a
// user's user tier, the tenant's shared tier), for each primitive: bytes
// (the values: a file's contents, a document's JSON text as GET returns it,
// a kv value's text; names are not counted, count caps them) and count. It
// lives in the store, never in process memory, so every replica sees the
// same figures (usageStore, usage_store.go):
//
//   - On the embedded SQLite store, documents and kv are counted by the
//     database itself: triggers on cpod_documents and cpod_kv update
//     cpod_usage in the same transaction as the write, so usage is exact
//     even across a crash. Files (on S3) are added by the engine.
//   - On MongoDB + Redis, in Redis (one hash per tenant): a kv write
//     reports what it replaced, read atomically with the write (SET ...
//     GET, GETDEL, or a script: kv_redis_usage.go), and the engine adds
//     the difference, one more script and round trip per write; a kv value
//     with a TTL leaves usage when it expires (usage_redis.go).
//   - Files, and documents on MongoDB: a write or delete holds the key's
//     lock (one writer of a file or document at a time, a batch all its
//     keys at once; in Redis on MongoDB + Redis, in process on the
//     embedded store, which one process owns) while it reads the old size,
//     writes and adds the difference (usage_files.go, usage_documents.go),
//     so racing writers of one key count it once.
//
// Quotas are per tenant (its own, else Config.DefaultQuota, field by
// field; 0 is unlimited). A write is admitted before it reaches the
// backend when the tenant's usage plus what it would add stays within
// every limit of its primitive: a set adds its whole new size and one to
// the count unless that would cross a limit, in which case the old value
// is read and only the difference counts (so an overwrite at the limit
// that does not grow still works). Refused: 507 quota_exceeded, nothing
// stored. Deletes are never refused. The check and the write are not one
// atomic step; the writes one process admits for a tenant are held against
// each other until they are counted (inflight), so a tenant may overshoot
// a limit by at most the writes in flight on other replicas at that moment
// (each at most Limits.MaxFileSize per file upload, one document or value
// per document or kv write).
//
// The usage a check reads is read at once from the store (no cache; on
// Redis the quick read does not sweep expired kv values, so a check about
// to refuse reads again with the sweeping read); the quota is cached per
// process for quotaCacheTTL, so a quota PUT through another replica
// applies within that time.

// primitive is files, documents or kv.
type primitive int

const (
	primFiles primitive = iota
	primDocuments
	primKV
	nPrims
)

var primNames = [nPrims]string{"files", "documents", "kv"}

func (p primitive) String() string { return primNames[p] }

// Limit is the quota of one primitive: at most Bytes bytes and Count
// items (files, documents or kv keys). Zero is unlimited.
type Limit struct {
	Bytes int64 `json:"bytes"`
	Count int64 `json:"count"`
}

// Quota is a tenant's limits, per primitive. Zero fields are unlimited.
type Quota struct {
	Files     Limit `json:"files"`
	Documents Limit `json:"documents"`
	KV        Limit `json:"kv"`
}

func (q Quota) of(p primitive) Limit {
	switch p {
	case primFiles:
		return q.Files
	case primDocuments:
		return q.Documents
	default:
		return q.KV
	}
}

func (q *Quota) set(p primitive, l Limit) {
	switch p {
	case primFiles:
		q.Files = l
	case primDocuments:
		q.Documents = l
	default:
		q.KV = l
	}
}

// usageFigures is the usage of one primitive.
type usageFigures struct {
	Bytes int64 `json:"bytes"`
	Count int64 `json:"count"`
}

// usageSet is the usage of every primitive of a tenant or location.
type usageSet [nPrims]usageFigures

func (u usageSet) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Files     usageFigures `json:"files"`
		Documents usageFigures `json:"documents"`
		KV        usageFigures `json:"kv"`
	}{u[primFiles], u[primDocuments], u[primKV]})
}

// ownQuota is a tenant's own limits: [primitive][0 bytes, 1 count], -1
// where it has none (Config.DefaultQuota applies).
type ownQuota [nPrims][2]int64

func noOwnQuota() ownQuota {
	var q ownQuota
	for p := range q {
		q[p] = [2]int64{-1, -1}
	}
	return q
}

// effective is the quota that applies: the tenant's own limits, else the
// default's.
func (o ownQuota) effective(def Quota) Quota {
	q := def
	for p := primitive(0); p < nPrims; p++ {
		l := def.of(p)
		if o[p][0] >= 0 {
			l.Bytes = o[p][0]
		}
		if o[p][1] >= 0 {
			l.Count = o[p][1]
		}
		q.set(p, l)
	}
	return q
}

// usageChange is what one write changed at one location: bytes and count
// to add (negative to take away). On Redis a kv value with an expiry is
// counted through end and create instead (usage_redis.go).
type usageChange struct {
	loc          string
	prim         primitive
	bytes, count int64
	end, create  *kvVersion
}

// oldValue is what a write replaced: its size, and whether one existed.
type oldValue struct {
	size    int64
	existed bool
}

// freed is what replacing o frees.
func (o oldValue) freed() usageFigures {
	if !o.existed {
		return usageFigures{}
	}
	return usageFigures{Bytes: o.size, Count: 1}
}

// change is the usage change of replacing o with a value of size n (n < 0:
// a delete).
func (o oldValue) change(loc string, p primitive, n int64) usageChange {
	ch := usageChange{loc: loc, prim: p}
	if o.existed {
		ch.bytes, ch.count = -o.size, -1
	}
	if n >= 0 {
		ch.bytes += n
		ch.count++
	}
	return ch
}

// ---- quotas per tenant, cached ----

// quotaCacheTTL is how long a process keeps a tenant's quota.
const quotaCacheTTL = time.Second

type quotaCache struct {
	mu sync.Mutex
	m  map[string]cachedQuota
}

type cachedQuota struct {
	q  Quota
	at time.Time
}

// quotaOf is the effective quota of tenant.
func (e *Engine) quotaOf(ctx context.Context, tenant string) (Quota, error) {
	now := time.Now()
	e.quotas.mu.Lock()
	cq, ok := e.quotas.m[tenant]
	e.quotas.mu.Unlock()
	if ok && now.Sub(cq.at) < quotaCacheTTL {
		return cq.q, nil
	}
	own, err := e.usage.quota(ctx, tenant)
	if err != nil {
		return Quota{}, err
	}
	q := own.effective(e.cfg.DefaultQuota)
	e.quotas.mu.Lock()
	if len(e.quotas.m) > 10000 { // bounded: a cache, not a registry
		clear(e.quotas.m)
	}
	e.quotas.m[tenant] = cachedQuota{q: q, at: now}
	e.quotas.mu.Unlock()
	return q, nil
}

// quotaError is the refusal of a write over a limit of p.
func (e *Engine) quotaError(p primitive, what string) error {
	e.metrics.quotaRejected(p)
	return errorf(CodeQuotaExceeded, "the write would take the tenant over its %s %s quota; nothing was stored", p, what)
}

// admit checks that a write of p that adds add (a set: its new size and
// one) keeps tenant within its quota. Over a limit, old (when given) reads
// what the write would free (the value it replaces), and only the
// difference counts. It costs nothing for a tenant without a limit on p.
//
// An admitted write is held in flight in this process until release
// (after its account): the writes of a tenant that one process admits at
// once are checked against each other too, so the overshoot a quota
// allows comes only from writes in flight on other replicas.
func (e *Engine) admit(ctx context.Context, tenant string, p primitive, add usageFigures, old func(context.Context) (usageFigures, error)) (release func(), err error) {
	q, err := e.quotaOf(ctx, tenant)
	if err != nil {
		return noRelease, err
	}
	l := q.of(p)
	if l.Bytes <= 0 && l.Count <= 0 {
		return noRelease, nil
	}
	// Writes accounted and released while the usage is read may or may
	// not be in it: reserve counts them again (at worst refusing early,
	// never letting them through twice).
	since := e.inflight.released(tenant, p)
	u, err := e.usage.total(ctx, tenant, p)
	if err != nil {
		return noRelease, err
	}
	over := func(u, add usageFigures) string {
		switch {
		case l.Bytes > 0 && add.Bytes > 0 && u.Bytes+add.Bytes > l.Bytes:
			return "bytes"
		case l.Count > 0 && add.Count > 0 && u.Count+add.Count > l.Count:
			return "count"
		}
		return ""
	}
	if old != nil && over(e.inflight.with(tenant, p, u), add) != "" {
		freed, err := old(ctx)
		if err != nil {
			return noRelease, err
		}
		add.Bytes -= freed.Bytes
		add.Count -= freed.Count
	}
	if over(e.inflight.with(tenant, p, u), add) != "" {
		// Before refusing: the full read, which on Redis first takes the
		// kv values whose TTL ended out of usage (total does not).
		all, err := e.usage.read(ctx, tenantPrefix(tenant))
		if err != nil {
			return noRelease, err
		}
		u = all[p]
	}
	return e.inflight.reserve(tenant, p, u, since, add, func(u usageFigures) string { return over(u, add) }, e.quotaError)
}

func noRelease() {}

// inflight are the writes this process admitted against a quota and has
// not yet accounted, per tenant and primitive, and what it released since
// it started (a running sum, for admit's reads).
type inflight struct {
	mu sync.Mutex
	m  map[inflightKey]*inflightState
}

type inflightKey struct {
	tenant string
	p      primitive
}

type inflightState struct {
	held, released usageFigures
}

// maxInflightKeys bounds the map: past it, the states of keys with nothing
// held go (their released sums with them: a read in progress then counts
// nothing twice, and may miss one write).
const maxInflightKeys = 100000

// released is the running sum of the releases of tenant's p.
func (f *inflight) released(tenant string, p primitive) usageFigures {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.m[inflightKey{tenant, p}]; st != nil {
		return st.released
	}
	return usageFigures{}
}

// with is u plus what is in flight for tenant's p.
func (f *inflight) with(tenant string, p primitive, u usageFigures) usageFigures {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.m[inflightKey{tenant, p}]; st != nil {
		return usageFigures{Bytes: u.Bytes + st.held.Bytes, Count: u.Count + st.held.Count}
	}
	return u
}

// reserve admits add when over(u + in flight + released since since) is
// "", and holds it in flight until the release it returns; else it
// answers refuse(p, what).
func (f *inflight) reserve(tenant string, p primitive, u, since, add usageFigures, over func(usageFigures) string, refuse func(primitive, string) error) (func(), error) {
	k := inflightKey{tenant, p}
	add = usageFigures{Bytes: max(add.Bytes, 0), Count: max(add.Count, 0)}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[inflightKey]*inflightState{}
	}
	st := f.m[k]
	if st == nil {
		if len(f.m) >= maxInflightKeys {
			for k, st := range f.m {
				if st.held == (usageFigures{}) {
					delete(f.m, k)
				}
			}
		}
		st = &inflightState{}
		f.m[k] = st
	}
	extra := usageFigures{Bytes: max(st.released.Bytes-since.Bytes, 0), Count: max(st.released.Count-since.Count, 0)}
	if what := over(usageFigures{Bytes: u.Bytes + st.held.Bytes + extra.Bytes, Count: u.Count + st.held.Count + extra.Count}); what != "" {
		return noRelease, refuse(p, what)
	}
	st.held.Bytes += add.Bytes
	st.held.Count += add.Count
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		st.held.Bytes -= add.Bytes
		st.held.Count -= add.Count
		st.released.Bytes += add.Bytes
		st.released.Count += add.Count
	}, nil
}

// headroom is how many bytes of p tenant may still add (old: what the
// write replaces, freed by it), or -1 for no limit; a file's upload,
// whose size may be unknown until its end. It holds size (the
// Content-Length, when known) and one count in flight until release.
func (e *Engine) headroom(ctx context.Context, tenant string, p primitive, old oldValue, size int64) (int64, func(), error) {
	q, err := e.quotaOf(ctx, tenant)
	if err != nil {
		return 0, noRelease, err
	}
	l := q.of(p)
	if l.Bytes <= 0 && l.Count <= 0 {
		return -1, noRelease, nil
	}
	since := e.inflight.released(tenant, p)
	all, err := e.usage.read(ctx, tenantPrefix(tenant)) // an upload is slow anyway: the sweeping read
	if err != nil {
		return 0, noRelease, err
	}
	u := all[p]
	add := usageFigures{Bytes: max(size, 0) - old.freed().Bytes, Count: 1 - old.freed().Count}
	release, err := e.inflight.reserve(tenant, p, u, since, add, func(u usageFigures) string {
		switch {
		case l.Count > 0 && add.Count > 0 && u.Count+add.Count > l.Count:
			return "count"
		case l.Bytes > 0 && add.Bytes > 0 && u.Bytes+add.Bytes > l.Bytes:
			return "bytes"
		}
		return ""
	}, e.quotaError)
	if err != nil || l.Bytes <= 0 {
		return -1, release, err
	}
	u = e.inflight.with(tenant, p, u) // this upload's reservation included
	room := l.Bytes - u.Bytes + max(add.Bytes, 0) + old.freed().Bytes
	return max(room, 0), release, nil
}

// account adds the changes of a write that the backend acknowledged. It
// outlives the request (a client that leaves right after its write does
// not take the change with it); a failure is logged and never fails the
// write, which has happened: usage is then off by that write until a
// recount (POST /v1/admin/tenants/{tenant}/usage/recount).
func (e *Engine) account(ctx context.Context, reqID, tenant string, chs ...usageChange) {
	n := 0
	for _, ch := range chs {
		if e.usage.explicit(ch.prim) && (ch.bytes != 0 || ch.count != 0 || ch.end != nil || ch.create != nil) {
			chs[n] = ch
			n++
		}
	}
	if n == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.BackendTimeout)
	defer cancel()
	if err := e.usage.add(ctx, tenant, chs[:n]); err != nil {
		e.log.Warn("storage: adding a write to its tenant's usage failed; usage is off by it until a recount", "request_id", reqID, "tenant", tenant, "err", err)
	}
}

// tenantOfKey is the tenant of a location prefix or key.
func tenantOfKey(loc string) string {
	t, _, _ := strings.Cut(loc, "/")
	return t
}

// ---- routes ----

// usageRoutes binds GET /v1/storage/usage (the caller's location) and the
// admin routes of quotas and usage.
func (e *Engine) usageRoutes() []route {
	return []route{
		{"GET", "/v1/storage/usage?tier", e.handleUsage},
		{"GET", "/v1/admin/tenants/{tenant}/usage", e.handleTenantUsage},
		{"POST", "/v1/admin/tenants/{tenant}/usage/recount", e.handleRecount},
		{"GET", "/v1/admin/tenants/{tenant}/quota", e.handleQuotaGet},
		{"PUT", "/v1/admin/tenants/{tenant}/quota", e.handleQuotaPut},
	}
}

// handleUsage answers the usage of the caller's location in its tier.
func (e *Engine) handleUsage(c *call) error {
	id, tier, err := e.authorizeCall(c, Read)
	if err != nil {
		return err
	}
	loc, err := Resolve(id, tier, "")
	if err != nil {
		return err
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	u, err := e.usage.read(ctx, loc.Prefix)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, u)
}

// tenantUsage is the admin answer: the tenant's usage and its quota.
type tenantUsage struct {
	usageSet
	quota Quota
}

func (t tenantUsage) MarshalJSON() ([]byte, error) {
	u := t.usageSet
	return json.Marshal(struct {
		Files     usageFigures `json:"files"`
		Documents usageFigures `json:"documents"`
		KV        usageFigures `json:"kv"`
		Quota     Quota        `json:"quota"`
	}{u[primFiles], u[primDocuments], u[primKV], t.quota})
}

func (e *Engine) handleTenantUsage(c *call) error {
	ids, err := e.adminIDs(c, "tenant")
	if err != nil {
		return err
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	u, err := e.usage.read(ctx, tenantPrefix(ids[0]))
	if err != nil {
		return err
	}
	return e.answerQuota(c, ids[0], &u)
}

// answerQuota answers the tenant's effective quota, read afresh
// (freshQuota), alone or, with u, after that usage (the admin usage
// answer).
func (e *Engine) answerQuota(c *call, tenant string, u *usageSet) error {
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	q, err := e.freshQuota(ctx, tenant)
	if err != nil {
		return err
	}
	if u == nil {
		return c.json(http.StatusOK, q)
	}
	return c.json(http.StatusOK, tenantUsage{*u, q})
}

// freshQuota reads the tenant's quota from the store (the admin's view,
// never the cache) and refreshes this process' cache with it.
func (e *Engine) freshQuota(ctx context.Context, tenant string) (Quota, error) {
	e.quotas.mu.Lock()
	delete(e.quotas.m, tenant)
	e.quotas.mu.Unlock()
	return e.quotaOf(ctx, tenant)
}

func (e *Engine) handleQuotaGet(c *call) error {
	ids, err := e.adminIDs(c, "tenant")
	if err != nil {
		return err
	}
	return e.answerQuota(c, ids[0], nil)
}

// maxQuotaBody bounds a quota PUT's body.
const maxQuotaBody = 4 << 10

// handleQuotaPut changes the tenant's own limits: a number sets one (0:
// unlimited, whatever the default), null removes it (the default applies),
// an absent field keeps it.
func (e *Engine) handleQuotaPut(c *call) error {
	ids, err := e.adminIDs(c, "tenant")
	if err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := decodeJSON(c, maxQuotaBody, &body); err != nil {
		return err
	}
	if body == nil {
		return errorf(CodeInvalidRequest, "the body must be a JSON object such as {\"files\":{\"bytes\":1000000}}")
	}
	type change struct {
		p     primitive
		field int
		v     int64 // -1: remove
	}
	var changes []change
	for name, raw := range body {
		p := primitive(-1)
		for i, n := range primNames {
			if n == name {
				p = primitive(i)
			}
		}
		if p < 0 {
			return errorf(CodeInvalidRequest, "unknown field %q: the quota has files, documents and kv", name)
		}
		if isNull(raw) {
			changes = append(changes, change{p, 0, -1}, change{p, 1, -1})
			continue
		}
		var lim map[string]json.RawMessage
		if err := json.Unmarshal(raw, &lim); err != nil || lim == nil {
			return errorf(CodeInvalidRequest, "%s must be an object such as {\"bytes\":1000000,\"count\":100}, or null", name)
		}
		for f, v := range lim {
			field := -1
			switch f {
			case "bytes":
				field = 0
			case "count":
				field = 1
			default:
				return errorf(CodeInvalidRequest, "unknown field %q in %s: a limit has bytes and count", f, name)
			}
			if isNull(v) {
				changes = append(changes, change{p, field, -1})
				continue
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil || n < 0 {
				return errorf(CodeInvalidRequest, "%s.%s must be a whole number from 0 (unlimited) to %d, or null", name, f, int64(1<<63-1))
			}
			changes = append(changes, change{p, field, n})
		}
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	// One update of a tenant's quota at a time, on every replica: FerretDB
	// does not make the store's compare-and-set atomic.
	unlock, err := e.locks.lock(ctx, "quota\x00"+ids[0])
	if err != nil {
		return err
	}
	defer unlock()
	own, err := e.usage.updateQuota(ctx, ids[0], func(own ownQuota) ownQuota {
		for _, ch := range changes {
			own[ch.p][ch.field] = ch.v
		}
		return own
	})
	if err != nil {
		return err
	}
	q := own.effective(e.cfg.DefaultQuota)
	e.quotas.mu.Lock()
	e.quotas.m[ids[0]] = cachedQuota{q: q, at: time.Now()}
	e.quotas.mu.Unlock()
	return c.json(http.StatusOK, q)
}

func (e *Engine) handleRecount(c *call) error {
	ids, err := e.adminIDs(c, "tenant")
	if err != nil {
		return err
	}
	if c.r.ContentLength > 0 {
		return errorf(CodeInvalidRequest, "a recount takes no body")
	}
	u, err := e.recount(c.ctx, ids[0])
	if err != nil {
		return err
	}
	return e.answerQuota(c, ids[0], &u)
}

// ParseQuota reads a quota written as comma-separated limits, such as
// "files.bytes=1GiB,files.count=10000,kv.count=1e5": each a primitive
// (files, documents, kv), '.', bytes or count, '=' and a whole number,
// bytes with an optional unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB, B).
// Unnamed limits stay zero (unlimited). httpserver's -default-quota.
func ParseQuota(s string) (Quota, error) {
	var q Quota
	if strings.TrimSpace(s) == "" {
		return q, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		prim, field, ok2 := strings.Cut(name, ".")
		if !ok || !ok2 {
			return Quota{}, fmt.Errorf("%q is not <primitive>.<bytes|count>=<number>", part)
		}
		p := primitive(-1)
		for i, n := range primNames {
			if n == prim {
				p = primitive(i)
			}
		}
		if p < 0 {
			return Quota{}, fmt.Errorf("%q: the primitive must be files, documents or kv", part)
		}
		l := q.of(p)
		switch field {
		case "bytes":
			n, err := parseByteSize(val)
			if err != nil {
				return Quota{}, fmt.Errorf("%q: %v", part, err)
			}
			l.Bytes = n
		case "count":
			n, err := parseCount(val)
			if err != nil {
				return Quota{}, fmt.Errorf("%q: %v", part, err)
			}
			l.Count = n
		default:
			return Quota{}, fmt.Errorf("%q: the limit must be bytes or count", part)
		}
		q.set(p, l)
	}
	return q, nil
}

// parseByteSize reads "1GiB", "500MB", "1024".
func parseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := parseCount(s)
	if err != nil {
		return 0, err
	}
	if n > (1<<63-1)/mult {
		return 0, fmt.Errorf("too large")
	}
	return n * mult, nil
}

// parseCount reads a whole number, also written like 1e5.
func parseCount(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if m, e, ok := strings.Cut(s, "e"); ok {
		a, err1 := strconv.ParseInt(m, 10, 64)
		b, err2 := strconv.Atoi(e)
		if err1 != nil || err2 != nil || a < 0 || b < 0 || b > 18 {
			return 0, fmt.Errorf("%q is not a whole number", s)
		}
		n := a
		for range b {
			if n > (1<<63-1)/10 {
				return 0, fmt.Errorf("%q is too large", s)
			}
			n *= 10
		}
		return n, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a whole number", s)
	}
	return n, nil
}
