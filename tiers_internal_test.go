package storage

import "testing"

// TestPrefixesMatchResolve: the admin erase and export find a tenant's,
// an app's and a user's data by the prefixes of tiers.go; they must be the
// ones Resolve writes under, or an erase would miss data (or take a
// neighbour's).
func TestPrefixesMatchResolve(t *testing.T) {
	for _, id := range []Identity{
		{Tenant: "t1", App: "a", User: "u1"},
		{Tenant: "t1}{", App: "ab*", User: "u[1]"},
	} {
		for tier, want := range map[Tier]string{
			TierPrivate: appPrefix(id.Tenant, id.App),
			TierUser:    userPrefix(id.Tenant, id.User),
			TierShared:  tenantPrefix(id.Tenant) + "shared/",
		} {
			loc, err := Resolve(id, tier, "x")
			if err != nil {
				t.Fatal(err)
			}
			if loc.Prefix != want || loc.Key != want+"x" {
				t.Errorf("%+v %s: Resolve gives %q (key %q), the prefix functions %q", id, tier, loc.Prefix, loc.Key, want)
			}
			if len(want) <= len(tenantPrefix(id.Tenant)) || want[:len(tenantPrefix(id.Tenant))] != tenantPrefix(id.Tenant) {
				t.Errorf("%s prefix %q does not start with the tenant's %q", tier, want, tenantPrefix(id.Tenant))
			}
		}
	}
}
