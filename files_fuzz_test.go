package storage

import (
	"errors"
	"path"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzFilePath drives the path → location mapping of the files endpoints
// the way a request does: a raw escaped path through the router's match (one
// percent-decoding), then fileLocation (the rules and Resolve). Whatever the
// input and identity, an accepted path resolves under the caller's own
// location prefix, computed here independently, and the key is already
// clean, so no component that normalizes paths can move it elsewhere. The
// same input as a list prefix must stay under the caller's location too.
//
// In CI, bounded: go test -run='^$' -fuzz=FuzzFilePath -fuzztime=20s .
// Plain go test runs the seeds below.
func FuzzFilePath(f *testing.F) {
	for _, raw := range []string{
		"a.txt", "config/settings.json", "../x", "a/../x", "%2e%2e/x", ".%2e/x", "%252e%252e/x",
		"a/%2F..", "..%5Cx", "/x", "%2Fx", "a//b", "x/", "%00", "a%0Ab", "%7F", "%C2%80", "%FF",
		"%C0%AF", "%ED%A0%80", "caf%C3%A9", "100%25", "%zz", ".", "..", "...", ".hidden",
		"a/./b", "C:%5Cx", "%5C%5Cserver", strings.Repeat("a/", 600), strings.Repeat("x", 1100),
	} {
		f.Add(raw, "t1", "a", "u1", uint8(0))
		f.Add(raw, "t10", "ab", "", uint8(1))
		f.Add(raw, "t1", "a", "u2", uint8(2))
	}
	f.Fuzz(func(t *testing.T, raw, tenant, app, user string, tierN uint8) {
		// Identities come only from verified tokens, which carry valid ids.
		if !validID(tenant) || !validID(app) || user != "" && !validID(user) {
			return
		}
		id := Identity{Tenant: tenant, App: app, User: user}
		tier := []Tier{TierPrivate, TierUser, TierShared}[tierN%3]
		var own string
		switch tier {
		case TierPrivate:
			own = tenant + "/apps/" + app + "/"
		case TierUser:
			own = tenant + "/users/" + user + "/"
		case TierShared:
			own = tenant + "/shared/"
		}

		params, ok, err := match("/v1/storage/files/{path...}", "/v1/storage/files/"+raw)
		if !ok || err != nil {
			return // not percent-encoding: 400 from the router
		}
		name := params["path"]
		loc, err := fileLocation(id, tier, name)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidRequest && !(e.Code == CodeUserRequired && user == "") {
				t.Fatalf("%q: unexpected error %v", raw, err)
			}
		} else {
			if loc.Prefix != own || loc.Key != own+name || !strings.HasPrefix(loc.Key, own) {
				t.Fatalf("%q as %+v/%s resolved to %q, outside %q", raw, id, tier, loc.Key, own)
			}
			if path.Clean("/"+loc.Key) != "/"+loc.Key {
				t.Fatalf("%q: key %q is not clean", raw, loc.Key)
			}
			if len(loc.Key) > maxFileKey || !utf8.ValidString(loc.Key) || !validText(loc.Key) ||
				strings.ContainsRune(loc.Key, '\\') || hasPercentEscape(name) {
				t.Fatalf("%q: key %q breaks a path rule", raw, loc.Key)
			}
			for _, seg := range strings.Split(name, "/") {
				if seg == "" || seg == "." || seg == ".." {
					t.Fatalf("%q: accepted segment %q", raw, seg)
				}
			}
		}

		// As a list prefix: the S3 listing prefix stays under the location.
		if checkListPrefix(name) == nil {
			loc, err := Resolve(id, tier, name)
			if err == nil && (loc.Prefix != own || !strings.HasPrefix(loc.Key, own)) {
				t.Fatalf("prefix %q lists %q, outside %q", name, loc.Key, own)
			}
		}
	})
}
