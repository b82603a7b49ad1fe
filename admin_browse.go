package storage

import (
	"context"
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// The admin read and edit routes of the web console (design.md,
// "Console"), with the admin token only, like every /v1/admin/ route:
//
//	GET /v1/admin/tenants?limit&cursor
//	GET /v1/admin/tenants/{tenant}/locations?limit&cursor
//	GET /v1/admin/tenants/{tenant}/locations/{location}/collections?limit&cursor
//	GET /v1/admin/tenants/{tenant}/locations/{location}/kv?prefix&limit&cursor
//
// and, under /v1/admin/tenants/{tenant}/locations/{location}/, the storage
// API's own routes of files, documents and kv (see adminMirrored): the
// same handlers, limits, answers and cursors as /v1/storage/..., on the
// location of the path instead of the bearer's identity and ?tier=.
//
// A location is one segment: "shared" (the tenant's shared tier),
// "private:{app}" (an app's private tier) or "user:{user}" (a user's user
// tier). Tenant, app and user pass validID, and the location prefix comes
// from Resolve (tiers.go), as for every storage call; nothing else builds
// one, so no path reaches another tenant's data.
//
// # Finding what exists
//
// Tenants, locations and collections are found from the data, in the
// three stores (files, documents, kv) one after the other: a listing
// walks the files' names, then the documents', then the kv keys', and a
// name found in two stores comes once per store (on different pages, or
// once on one page: a page has no repeats). Every request does bounded
// work: an ordered store (S3, MongoDB's _id index, SQLite's primary keys)
// seeks to each next name (one indexed read per name returned, at most
// limit); Redis, which has no order, SCANs at most adminScanCalls batches
// of limit keys and hands back its SCAN cursor, so a page may be empty
// while nextCursor is not null. FerretDB's partitioned layout (one
// physical collection per location and collection, named by hashes) is
// walked by physical collection: one catalog listing, then one read per
// collection, at most adminPartitionReads per request.
//
// Cursors are opaque and HMAC-protected, bound to the route, tenant,
// location and prefix; anything else is 400 invalid_cursor. limit is 1 to
// Limits.MaxListLimit (default 100).

// adminAppID stands for the app in the identity of an admin acting on a
// user or shared location, whose location has no app segment.
const adminAppID = "cpod-admin"

// adminScanCalls caps the Redis SCAN calls of one admin listing request.
const adminScanCalls = 10

// adminPartitionReads caps the physical collections read by one admin
// listing request on the partitioned layout.
const adminPartitionReads = 100

// actAs is the location an admin route acts on.
type actAs struct {
	id   Identity
	tier Tier
}

// adminMirrored are the storage routes the console reaches as admin,
// under /v1/admin/tenants/{tenant}/locations/{location}/: every read and
// edit of one file, document or kv key, the files listing, documents
// queries and counts, and the three change feeds. Batches, increments and
// signed URLs are left to apps.
var adminMirrored = []string{
	"GET /v1/storage/db/{collection}/changes",
	"GET /v1/storage/kv/changes",
	"GET /v1/storage/files/changes",
	"PUT /v1/storage/kv/{key...}",
	"GET /v1/storage/kv/{key...}",
	"HEAD /v1/storage/kv/{key...}",
	"DELETE /v1/storage/kv/{key...}",
	"PATCH /v1/storage/kv/{key...}",
	"PUT /v1/storage/files/{path...}",
	"GET /v1/storage/files/{path...}",
	"HEAD /v1/storage/files/{path...}",
	"DELETE /v1/storage/files/{path...}",
	"GET /v1/storage/files",
	"PUT /v1/storage/db/{collection}/{key}",
	"GET /v1/storage/db/{collection}/{key}",
	"HEAD /v1/storage/db/{collection}/{key}",
	"DELETE /v1/storage/db/{collection}/{key}",
	"PATCH /v1/storage/db/{collection}/{key}",
	"POST /v1/storage/db/{collection}/query",
	"POST /v1/storage/db/{collection}/count",
}

const adminLocationBase = "/v1/admin/tenants/{tenant}/locations/{location}/"

// adminBrowseRoutes binds the console's admin routes; routes are the
// storage routes bound so far, mirrored in their order (a change feed
// before the key routes it would otherwise match).
func (e *Engine) adminBrowseRoutes(routes []route) []route {
	out := []route{
		{"GET", "/v1/admin/tenants?limit&cursor", e.handleAdminTenants},
		{"GET", "/v1/admin/tenants/{tenant}/locations?limit&cursor", e.handleAdminLocations},
		{"GET", adminLocationBase + "collections?limit&cursor", e.handleAdminCollections},
		{"GET", adminLocationBase + "kv?prefix&limit&cursor", e.handleAdminKVList},
	}
	for _, rt := range routes {
		pattern, query, _ := strings.Cut(rt.pattern, "?")
		if !slices.Contains(adminMirrored, rt.method+" "+pattern) {
			continue
		}
		var names []string
		for _, n := range strings.Split(query, "&") {
			if n != "tier" && n != "" {
				names = append(names, n)
			}
		}
		p := strings.Replace(pattern, "/v1/storage/", adminLocationBase, 1)
		if len(names) > 0 {
			p += "?" + strings.Join(names, "&")
		}
		out = append(out, route{rt.method, p, e.asLocation(rt.handle)})
	}
	return out
}

// asLocation runs a storage handler as admin on the path's location.
func (e *Engine) asLocation(h func(*call) error) func(*call) error {
	return func(c *call) error {
		as, err := e.adminLocation(c)
		if err != nil {
			return err
		}
		c.as = as
		return h(c)
	}
}

// adminLocation authorizes an admin call and parses its {tenant} and
// {location}.
func (e *Engine) adminLocation(c *call) (*actAs, error) {
	ids, err := e.adminIDs(c, "tenant")
	if err != nil {
		return nil, err
	}
	id, tier, err := parseLocation(ids[0], c.params["location"])
	if err != nil {
		return nil, err
	}
	return &actAs{id: id, tier: tier}, nil
}

// parseLocation reads a location segment: "shared", "private:{app}" or
// "user:{user}".
func parseLocation(tenant, s string) (Identity, Tier, error) {
	bad := errorf(CodeInvalidRequest, `the location must be "shared", "private:{app}" or "user:{user}", the id 1 to 128 printable ASCII characters without '/', '\' or '%%', and not '.' or '..'`)
	kind, owner, _ := strings.Cut(s, ":")
	switch {
	case s == "shared":
		return Identity{Tenant: tenant, App: adminAppID}, TierShared, nil
	case kind == "private" && validID(owner):
		return Identity{Tenant: tenant, App: owner}, TierPrivate, nil
	case kind == "user" && validID(owner):
		return Identity{Tenant: tenant, App: adminAppID, User: owner}, TierUser, nil
	}
	return Identity{}, "", bad
}

// locationOf is the location segment of a tier and owner.
func locationOf(t Tier, owner string) string {
	if t == TierShared {
		return "shared"
	}
	return string(t) + ":" + owner
}

// prefix is the location prefix of an admin location, from Resolve.
func (a *actAs) prefix() (string, error) {
	loc, err := Resolve(a.id, a.tier, "")
	return loc.Prefix, err
}

// ---- paging ----

// adminPage reads ?limit= and ?cursor= of a listing; scope binds the
// cursor to its listing. The cursor's payload is a phase (which store
// and part of the walk) and the position within it.
type adminPage struct {
	limit int
	phase int
	pos   string
	scope string
}

func (e *Engine) readAdminPage(c *call, scope string) (adminPage, error) {
	p := adminPage{limit: min(defaultListLimit, e.cfg.Limits.MaxListLimit), scope: scope}
	if v, given, err := queryValue(c.r, "limit"); err != nil {
		return p, err
	} else if given {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > int64(e.cfg.Limits.MaxListLimit) {
			return p, errorf(CodeInvalidRequest, "limit must be a whole number from 1 to %d", e.cfg.Limits.MaxListLimit)
		}
		p.limit = int(n)
	}
	cur, given, err := queryValue(c.r, "cursor")
	if err != nil || !given {
		return p, err
	}
	bad := errorf(CodeInvalidCursor, "the cursor is not valid for this listing")
	parts := strings.Split(cur, ".")
	if len(cur) > maxCursor || len(parts) != 3 || parts[0] != "a1" {
		return p, bad
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(parts[1])
	sum, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || len(payload) < 1 || !e.validMAC("admin-cursor", []byte(scope+"\x00"+string(payload)), sum) {
		return p, bad
	}
	p.phase, p.pos = int(payload[0]), string(payload[1:])
	return p, nil
}

// cursor is the cursor that continues at phase and pos.
func (e *Engine) adminCursor(p adminPage, phase int, pos string) *string {
	payload := string([]byte{byte(phase)}) + pos
	sum := e.mac("admin-cursor", []byte(p.scope+"\x00"+payload))
	s := "a1." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(sum)
	return &s
}

// segmentSource lists the distinct names that follow prefix up to the
// next '/' in one store's keys, from pos ("" from the start), at most
// limit and bounded work; next is "" when the store holds no more.
type segmentSource func(ctx context.Context, prefix, pos string, limit int) (names []string, next string, err error)

// sources are the stores walked to find tenants and locations, in order.
func (e *Engine) sources() []segmentSource {
	return []segmentSource{e.fileSegments, e.docs.store.segments, e.kv.segments}
}

// walk runs the phases of a listing from the page's cursor until limit
// names are found or the phases end; phase i lists prefixes[i%len] in
// store i/len. keep filters a name found. It returns the names (no
// repeats, in the order found) with the phase and position to go on from
// (done when phase is -1).
func (e *Engine) walk(ctx context.Context, p adminPage, prefixes []string, keep func(int, string) bool) (names []string, phases []int, nextPhase int, next string, err error) {
	srcs := e.sources()
	n := len(srcs) * len(prefixes)
	if p.phase >= n {
		return nil, nil, -1, "", errorf(CodeInvalidCursor, "the cursor is not valid for this listing")
	}
	seen := map[string]bool{}
	phase, pos := p.phase, p.pos
	for phase < n && len(names) < p.limit {
		src, prefix := srcs[phase/len(prefixes)], prefixes[phase%len(prefixes)]
		found, nx, err := src(ctx, prefix, pos, p.limit-len(names))
		if err != nil {
			return nil, nil, -1, "", err
		}
		for _, f := range found {
			k := strconv.Itoa(phase%len(prefixes)) + "/" + f
			if !seen[k] && keep(phase%len(prefixes), f) {
				seen[k] = true
				names = append(names, f)
				phases = append(phases, phase%len(prefixes))
			}
		}
		if nx != "" {
			return names, phases, phase, nx, nil
		}
		phase, pos = phase+1, ""
	}
	if phase >= n {
		return names, phases, -1, "", nil
	}
	return names, phases, phase, "", nil
}

// ---- handlers ----

type adminList struct {
	Items      any     `json:"items"`
	NextCursor *string `json:"nextCursor"`
}

// handleAdminTenants lists the tenants that hold data.
func (e *Engine) handleAdminTenants(c *call) error {
	if err := e.authorizeAdmin(c.r); err != nil {
		return err
	}
	p, err := e.readAdminPage(c, "tenants")
	if err != nil {
		return err
	}
	names, _, phase, pos, err := e.walk(c.ctx, p, []string{""}, func(_ int, s string) bool { return validID(s) })
	if err != nil {
		return err
	}
	type tenant struct {
		ID string `json:"id"`
	}
	items := make([]tenant, len(names))
	for i, n := range names {
		items[i] = tenant{n}
	}
	out := adminList{Items: items}
	if phase >= 0 {
		out.NextCursor = e.adminCursor(p, phase, pos)
	}
	return c.json(http.StatusOK, out)
}

// adminLocationItem is one location of a tenant.
type adminLocationItem struct {
	Location string `json:"location"`
	Tier     Tier   `json:"tier"`
	App      string `json:"app,omitempty"`
	User     string `json:"user,omitempty"`
}

// handleAdminLocations lists the locations of a tenant that hold data:
// the shared tier first (always, even empty), then apps' private tiers
// and users' user tiers as each store holds them.
func (e *Engine) handleAdminLocations(c *call) error {
	ids, err := e.adminIDs(c, "tenant")
	if err != nil {
		return err
	}
	tenant := ids[0]
	p, err := e.readAdminPage(c, "locations\x00"+tenant)
	if err != nil {
		return err
	}
	var items []adminLocationItem
	first := c.r.URL.Query().Get("cursor") == ""
	if first {
		items = append(items, adminLocationItem{Location: "shared", Tier: TierShared})
		p.limit--
	}
	var phase int
	var pos string
	if p.limit > 0 || !first {
		var names []string
		var kinds []int
		names, kinds, phase, pos, err = e.walk(c.ctx, p, []string{appsPrefix(tenant), usersPrefix(tenant)}, func(_ int, s string) bool { return validID(s) })
		if err != nil {
			return err
		}
		for i, n := range names {
			if kinds[i] == 0 {
				items = append(items, adminLocationItem{Location: locationOf(TierPrivate, n), Tier: TierPrivate, App: n})
			} else {
				items = append(items, adminLocationItem{Location: locationOf(TierUser, n), Tier: TierUser, User: n})
			}
		}
	}
	if items == nil {
		items = []adminLocationItem{}
	}
	out := adminList{Items: items}
	if phase >= 0 {
		out.NextCursor = e.adminCursor(p, phase, pos)
	}
	return c.json(http.StatusOK, out)
}

// handleAdminCollections lists the document collections of a location,
// by name.
func (e *Engine) handleAdminCollections(c *call) error {
	as, err := e.adminLocation(c)
	if err != nil {
		return err
	}
	prefix, err := as.prefix()
	if err != nil {
		return err
	}
	p, err := e.readAdminPage(c, "collections\x00"+prefix)
	if err != nil {
		return err
	}
	if p.phase != 0 {
		return errorf(CodeInvalidCursor, "the cursor is not valid for this listing")
	}
	names, next, err := e.docs.store.collections(c.ctx, prefix, p.pos, p.limit)
	if err != nil {
		return err
	}
	type collection struct {
		Name string `json:"name"`
	}
	items := []collection{}
	for _, n := range names {
		if validCollection(n) == nil {
			items = append(items, collection{n})
		}
	}
	out := adminList{Items: items}
	if next != "" {
		out.NextCursor = e.adminCursor(p, 0, next)
	}
	return c.json(http.StatusOK, out)
}

// handleAdminKVList lists the kv keys of a location under ?prefix=, with
// their TTLs: in key order on SQLite, in SCAN order on Redis (each page
// sorted).
func (e *Engine) handleAdminKVList(c *call) error {
	as, err := e.adminLocation(c)
	if err != nil {
		return err
	}
	loc, err := as.prefix()
	if err != nil {
		return err
	}
	prefix, err := queryParam(c.r, "prefix")
	if err != nil {
		return err
	}
	if len(prefix) > maxKVKey || !validText(prefix) {
		return errorf(CodeInvalidRequest, "a kv prefix must be at most %d bytes of UTF-8 without control characters", maxKVKey)
	}
	p, err := e.readAdminPage(c, "kv\x00"+loc+"\x00"+prefix)
	if err != nil {
		return err
	}
	if p.phase != 0 {
		return errorf(CodeInvalidCursor, "the cursor is not valid for this listing")
	}
	entries, next, err := e.kv.list(c.ctx, loc+prefix, p.pos, p.limit)
	if err != nil {
		return err
	}
	type item struct {
		Key string `json:"key"`
		TTL int64  `json:"ttl"`
	}
	items := make([]item, 0, len(entries))
	for _, en := range entries {
		if strings.HasPrefix(en.key, loc) {
			items = append(items, item{en.key[len(loc):], en.ttl})
		}
	}
	out := adminList{Items: items}
	if next != "" {
		out.NextCursor = e.adminCursor(p, 0, next)
	}
	return c.json(http.StatusOK, out)
}

// kvEntry is one key of a kv listing: its location key and TTL.
type kvEntry struct {
	key string
	ttl int64
}

// seekSegments lists segments in an ordered store: first returns the
// smallest key in [from, end) (end "" for no bound), and each name costs
// one such seek. Keys without a '/' after prefix are stepped over.
func seekSegments(ctx context.Context, first func(ctx context.Context, from, end string) (string, bool, error), prefix, pos string, limit int) ([]string, string, error) {
	end := ""
	if prefix != "" {
		end = prefixEnd(prefix)
	}
	from := prefix
	if pos != "" {
		from = prefix + pos + "0" // past every key of segment pos ('0' follows '/')
	}
	var names []string
	for len(names) < limit {
		k, ok, err := first(ctx, from, end)
		if err != nil {
			return nil, "", err
		}
		if !ok || !strings.HasPrefix(k, prefix) {
			return names, "", nil
		}
		rest := k[len(prefix):]
		i := strings.IndexByte(rest, '/')
		if i <= 0 {
			// Never written by the engine: every key under a tenant or
			// location-kind prefix names a location, whose ids are
			// not empty. The walk ends rather than step key by key.
			return names, "", nil
		}
		seg := rest[:i]
		names = append(names, seg)
		from = prefix + seg + "0"
	}
	return names, names[len(names)-1], nil
}
