package storage

import (
	"strings"
)

// Tier selects who can see a piece of data. It decides the location, never
// the physical store.
type Tier string

// The three tiers of the storage spec.
const (
	// TierPrivate is the default: this app only, in this tenant.
	TierPrivate Tier = "private"
	// TierUser is the authenticated user, across every app they use in this tenant.
	TierUser Tier = "user"
	// TierShared is every app of this tenant.
	TierShared Tier = "shared"
)

// Access is the kind of operation a scope allows.
type Access string

// The two kinds of access.
const (
	Read  Access = "read"
	Write Access = "write"
)

// Scope returns the scope name that grants access a on tier t, such as
// "storage.user.write".
func Scope(t Tier, a Access) string {
	// The six names are constants, so that the check of every call builds
	// no string.
	switch {
	case t == TierPrivate && a == Read:
		return "storage.private.read"
	case t == TierPrivate && a == Write:
		return "storage.private.write"
	case t == TierUser && a == Read:
		return "storage.user.read"
	case t == TierUser && a == Write:
		return "storage.user.write"
	case t == TierShared && a == Read:
		return "storage.shared.read"
	case t == TierShared && a == Write:
		return "storage.shared.write"
	}
	return "storage." + string(t) + "." + string(a)
}

// Scopes lists every storage scope name, in a stable order. These are the only
// names an app may declare.
var Scopes = []string{
	Scope(TierPrivate, Read), Scope(TierPrivate, Write),
	Scope(TierUser, Read), Scope(TierUser, Write),
	Scope(TierShared, Read), Scope(TierShared, Write),
}

func knownScope(s string) bool {
	for _, k := range Scopes {
		if s == k {
			return true
		}
	}
	return false
}

// ParseTier parses the tier query parameter or body field. The empty string is
// the default, private; anything else but the three names is invalid_request.
func ParseTier(s string) (Tier, error) {
	switch Tier(s) {
	case "":
		return TierPrivate, nil
	case TierPrivate, TierUser, TierShared:
		return Tier(s), nil
	}
	return "", errorf(CodeInvalidRequest, "tier must be private, user or shared")
}

// Location is where a relative name of one identity and tier lives. Prefix is
// the tier's location, always ending with "/", such as "t1/apps/app-a/"; Key is
// Prefix followed by the relative name. The same prefix is used in S3 (object
// key prefix), MongoDB (the location field) and Redis (key prefix).
type Location struct {
	Prefix string
	Key    string
}

// Resolve is the one function that maps (identity, tier, relative name) to a
// location; nothing else builds locations. The relative name must already
// have passed the primitive's own validation (file path, document key, kv
// key); Resolve still refuses a name that could leave the prefix. It fails
// with user_required for the user tier when the identity carries no user.
//
//	private  {tenant}/apps/{app}/{name}
//	user     {tenant}/users/{user}/{name}
//	shared   {tenant}/shared/{name}
//
// The user tier deliberately has no app segment. The storage spec says user
// data is "visible to all apps they use" and "any app this user uses can read
// it", while its path table shows {tenant}/users/{user}/apps/{app}/; both
// cannot hold, since a reading app only sends the relative name. The engine
// keeps the promised visibility: every app of the user, in that tenant, sees
// the same user-tier data (still only with the user-tier scopes its app
// declared). The "/users/" segment can never collide with "/apps/" or
// "/shared/", and ids cannot contain "/", so locations never overlap.
func Resolve(id Identity, t Tier, name string) (Location, error) {
	if !validID(id.Tenant) || !validID(id.App) {
		return Location{}, errorf(CodeInvalidToken, "token carries no valid tenant and app")
	}
	// The key is built in one allocation, and the prefix is its start.
	var seg, owner string
	switch t {
	case TierPrivate, "":
		seg, owner = "/apps/", id.App
	case TierUser:
		if id.User == "" {
			return Location{}, errorf(CodeUserRequired, "the user tier needs a token that carries a user")
		}
		if !validID(id.User) {
			return Location{}, errorf(CodeInvalidToken, "token carries no valid user")
		}
		seg, owner = "/users/", id.User
	case TierShared:
		seg = "/shared"
	default:
		return Location{}, errorf(CodeInvalidRequest, "tier must be private, user or shared")
	}
	// Defence in depth: every primitive refuses control characters already.
	if strings.ContainsRune(name, 0) {
		return Location{}, errorf(CodeInvalidRequest, "invalid name")
	}
	var b strings.Builder
	b.Grow(len(id.Tenant) + len(seg) + len(owner) + 1 + len(name))
	b.WriteString(id.Tenant)
	b.WriteString(seg)
	b.WriteString(owner)
	b.WriteByte('/')
	n := b.Len()
	b.WriteString(name)
	key := b.String()
	return Location{Prefix: key[:n], Key: key}, nil
}

// tenantPrefix is the prefix of every location of a tenant, appPrefix the
// location of an app's private tier and userPrefix of a user's user tier,
// for the admin erase and export (admin.go); the ids must have passed
// validID. Resolve builds the same prefixes in one allocation;
// TestPrefixesMatchResolve keeps the two in step.
func tenantPrefix(tenant string) string     { return tenant + "/" }
func appPrefix(tenant, app string) string   { return appsPrefix(tenant) + app + "/" }
func userPrefix(tenant, user string) string { return usersPrefix(tenant) + user + "/" }

// appsPrefix and usersPrefix start every app's private location and
// every user's user location of a tenant: the console's listings
// (admin_browse.go) find the app and user ids as the segment after them.
func appsPrefix(tenant string) string  { return tenantPrefix(tenant) + "apps/" }
func usersPrefix(tenant string) string { return tenantPrefix(tenant) + "users/" }

// validID is the id rule for tenant, app and user: 1 to 128 bytes of printable
// ASCII (0x21 to 0x7E) except '/', '\' and '%', and not "." or "..".
//
// '%' is refused although design.md's charset allows it, for the reason
// file paths refuse percent-escapes (see files.go): ids become part of
// locations, which travel percent-encoded (S3 request paths, signed URL
// paths, the admin API's /v1/oauth/apps/{client_id}), and a component that
// decodes once more would turn tenant "t%2Fusers%2Fu1" into "t/users/u1",
// another location. Without '%' no decoding can change an id, whatever a
// proxy or an S3 implementation does.
//
// ValidID is the same rule, for the packages around the engine (the
// console, httpserver's token command) that check ids before they mint a
// token.
func ValidID(s string) bool { return validID(s) }

func validID(s string) bool {
	if len(s) == 0 || len(s) > 128 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7E || c == '/' || c == '\\' || c == '%' {
			return false
		}
	}
	return true
}
