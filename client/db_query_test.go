package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cpod/storage/client"
)

// TestDBQueryOperators: each condition type reaches the engine as its
// operator object, and the engine's results and counts are the documented
// ones, paged by cursors.
func TestDBQueryOperators(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	requireDocuments(t, c)
	ctx := context.Background()
	sessions := c.Storage.DB.Collection("sessions", nil)
	docs := []struct {
		key       string
		plan      any
		createdAt any
	}{
		{"s1", "pro", "2025-01-01"},
		{"s2", "team", "2025-01-15"},
		{"s3", "free", "2025-02-01"},
		{"s4", nil, 20250105},
		{"s5", "pro", nil},
	}
	for _, d := range docs {
		v := map[string]any{"plan": d.plan, "createdAt": d.createdAt, "n": len(d.key)}
		if d.createdAt == nil {
			delete(v, "createdAt")
		}
		must(t, "Set", sessions.Set(ctx, d.key, v))
	}
	cases := []struct {
		filter map[string]any
		wire   string
		want   string
	}{
		{map[string]any{"plan": client.In("pro", "team")}, `{"plan":{"in":["pro","team"]}}`, "s1 s2 s5"},
		{map[string]any{"plan": client.InOrNull("team")}, `{"plan":{"in":["team",null]}}`, "s2 s4"},
		{map[string]any{"createdAt": client.Between(client.Gte("2025-01-01"), client.Lt("2025-02-01"))}, `{"createdAt":{"gte":"2025-01-01","lt":"2025-02-01"}}`, "s1 s2"},
		{map[string]any{"createdAt": client.Gt(0)}, `{"createdAt":{"gt":0}}`, "s4"},
		{map[string]any{"createdAt": client.Lte("2025-01-15")}, `{"createdAt":{"lte":"2025-01-15"}}`, "s1 s2"},
		{map[string]any{"plan": client.Ne("pro")}, `{"plan":{"ne":"pro"}}`, "s2 s3 s4"},
		{map[string]any{"createdAt": client.NotNull()}, `{"createdAt":{"ne":null}}`, "s1 s2 s3 s4"},
		{map[string]any{"plan": "pro", "n": client.Gte(2)}, `{"n":{"gte":2},"plan":"pro"}`, "s1 s5"},
		{nil, `null`, "s1 s2 s3 s4 s5"},
	}
	for _, tc := range cases {
		wire, err := json.Marshal(tc.filter)
		must(t, "Marshal", err)
		if string(wire) != tc.wire {
			t.Fatalf("filter encodes as %s, want %s", wire, tc.wire)
		}
		want := strings.Fields(tc.want)
		got := queryAll(t, sessions, client.QueryOptions{Filter: tc.filter, Sort: []client.SortField{client.Desc("createdAt")}, Limit: 1})
		if len(got) != len(want) || fmt.Sprint(slices.Sorted(slices.Values(got))) != fmt.Sprint(want) {
			t.Fatalf("%s: got %v, want %v", wire, got, want)
		}
		n, err := sessions.Count(ctx, tc.filter)
		must(t, "Count", err)
		if n != int64(len(want)) {
			t.Fatalf("Count(%s) = %d, want %d", wire, n, len(want))
		}
	}
	// A raw operator the engine does not know is still refused.
	_, err := sessions.Count(ctx, map[string]any{"plan": map[string]any{"$ne": ""}})
	wantErr(t, "Count with $ne", err, client.ErrInvalidRequest)
	_, err = sessions.Query(ctx, client.QueryOptions{Filter: map[string]any{"plan": map[string]any{"in": []string{}}}})
	wantErr(t, "empty in", err, client.ErrInvalidRequest)
}
