package storage

import (
	"context"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// textScript answers what kvTextLua's text() reads from ARGV[1]: the text
// and 1 for the expiry form, 0 for the legacy form.
var textScript = redis.NewScript(kvTextLua + `
local t, i = text(ARGV[1])
if i then return {t, 1} end
return {t, 0}
`)

// kvValueRedises is miniredis and, when CPODTEST_REDIS_URL names one, a
// real Redis: the scripts must read values the same way on both.
func kvValueRedises(t *testing.T) map[string]*redis.Client {
	t.Helper()
	m := miniredis.RunT(t)
	out := map[string]*redis.Client{"miniredis": redis.NewClient(&redis.Options{Addr: m.Addr()})}
	if u := os.Getenv("CPODTEST_REDIS_URL"); u != "" {
		opt, err := redis.ParseURL(u)
		if err != nil {
			t.Fatal(err)
		}
		out["redis"] = redis.NewClient(opt)
	}
	for _, c := range out {
		t.Cleanup(func() { c.Close() })
	}
	return out
}

// TestKVDecode: kvDecode reads what kvEncode writes, whatever the text
// (empty, starting with digits or ':', binary), reads anything else as a
// legacy value unchanged, and the scripts' text() agrees with it on every
// case, on miniredis and a real Redis.
func TestKVDecode(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_123)
	type tc struct {
		stored, text string
		exp          int64
		ok           bool
	}
	cases := []tc{
		{kvEncode("v", 0, now), "v", 0, true},
		{kvEncode("v", time.Minute, now), "v", 1_700_000_060_123, true},
		{kvEncode("", 0, now), "", 0, true},
		{kvEncode("12:34", time.Second, now), "12:34", 1_700_000_001_123, true},
		{kvEncode(":", 0, now), ":", 0, true},
		{kvEncode("\xff0:x", 0, now), "\xff0:x", 0, true},
		{"\xff0:", "", 0, true},
		{"\xff9223372036854775807:v", "v", 9223372036854775807, true},
		{"plain", "plain", 0, false},
		{"", "", 0, false},
		{`{"a":1}`, `{"a":1}`, 0, false},
		{"41", "41", 0, false},
		{"\xff", "\xff", 0, false},
		{"\xff:v", "\xff:v", 0, false},
		{"\xff12", "\xff12", 0, false},
		{"\xff1a:v", "\xff1a:v", 0, false},
		{"\xff" + strings.Repeat("1", 20) + ":v", "\xff" + strings.Repeat("1", 20) + ":v", 0, false},
		{"\xfe0:v", "\xfe0:v", 0, false},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = "\xff0123456789:ab"[r.IntN(14)]
		}
		ttl := time.Duration(r.IntN(3)) * time.Duration(r.Int64N(int64(366*24*time.Hour)))
		exp := int64(0)
		if ttl > 0 {
			exp = now.Add(ttl).UnixMilli()
		}
		cases = append(cases, tc{kvEncode(string(b), ttl, now), string(b), exp, true})
		// Random bytes: whatever Go reads, Lua must read the same.
		text, exp, ok := kvDecode(string(b))
		cases = append(cases, tc{string(b), text, exp, ok})
	}
	for _, c := range cases {
		text, exp, ok := kvDecode(c.stored)
		if text != c.text || exp != c.exp || ok != c.ok {
			t.Fatalf("kvDecode(%q) = %q, %d, %v; want %q, %d, %v", c.stored, text, exp, ok, c.text, c.exp, c.ok)
		}
	}
	ctx := context.Background()
	for name, rdb := range kvValueRedises(t) {
		for _, c := range cases {
			res, err := textScript.Run(ctx, rdb, []string{"k"}, c.stored).Slice()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if res[0] != c.text || res[1] != map[bool]int64{true: 1, false: 0}[c.ok] {
				t.Fatalf("%s: text(%q) = %q, %v; want %q, %v", name, c.stored, res[0], res[1], c.text, c.ok)
			}
		}
	}
}

// TestKVTTLLeft: seconds left rounded up, at least 1 while Redis holds the
// key, -1 without expiry.
func TestKVTTLLeft(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	for _, c := range []struct {
		exp  int64
		want int64
	}{
		{0, -1},
		{now.UnixMilli() + 60_000, 60},
		{now.UnixMilli() + 59_001, 60},
		{now.UnixMilli() + 1, 1},
		{now.UnixMilli(), 1},
		{now.UnixMilli() - 5_000, 1},
	} {
		if got := kvTTLLeft(c.exp, now); got != c.want {
			t.Errorf("kvTTLLeft(now%+dms) = %d, want %d", c.exp-now.UnixMilli(), got, c.want)
		}
	}
}
