package storage

import (
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// unescapeName inverts escapeName.
func unescapeName(t *testing.T, s string) string {
	if s == "%" {
		return ""
	}
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			t.Fatalf("escape %q: bad %% sequence at %d", s, i)
		}
		b = append(b, byte(n))
		i += 2
	}
	return string(b)
}

// ferretRefuses reports why FerretDB v1.24 would refuse s as a stored field
// name (types.Document.ValidateData) or as a path element (types.newPath),
// or as a BSON name; "" if it takes it.
func ferretRefuses(s string) string {
	switch {
	case s == "":
		return "empty path element"
	case !utf8.ValidString(s):
		return "invalid UTF-8"
	case strings.HasPrefix(s, "$"):
		return "leading $"
	case strings.Contains(s, "."):
		return "dot"
	case strings.ContainsRune(s, 0):
		return "NUL in a BSON name"
	case strings.TrimSpace(s) != s:
		return "leading or trailing white space in a path element"
	}
	return ""
}

// TestEscapeName: every name FerretDB refuses in a stored document or a
// path becomes one it takes, injectively (it decodes back), and other names
// stay as they are.
func TestEscapeName(t *testing.T) {
	table := []struct{ in, want string }{
		{"a", "a"},
		{"a b", "a b"},
		{"", "%"},
		{"%", "%25"},
		{"a.b", "a%2Eb"},
		{"$gt", "%24gt"},
		{"a$", "a$"},
		{"nul\x00", "nul%00"},
		{" c", "%20c"},
		{"c ", "c%20"},
		{"  both  ", "%20 both %20"},
		{" ", "%20"},
		{"\t", "%09"},
		{"\u00a0x", "%C2%A0x"},
		{"x\u3000", "x%E3%80%80"},
		{"\u0085", "%C2%85"},
		{"%20c", "%2520c"},
		{"é", "é"},
	}
	for _, tc := range table {
		got := escapeName(tc.in)
		if got != tc.want {
			t.Errorf("escapeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if why := ferretRefuses(got); why != "" {
			t.Errorf("escapeName(%q) = %q: FerretDB refuses it (%s)", tc.in, got, why)
		}
		if back := unescapeName(t, got); back != tc.in {
			t.Errorf("escapeName(%q) = %q decodes to %q", tc.in, got, back)
		}
	}
	// Random names over the troublesome characters.
	alphabet := []rune{'a', 'é', '%', '.', '$', 0, ' ', '\t', '\n', '\u00a0', '\u0085', '\u2028', '\u3000', '2', 'E'}
	rng := rand.New(rand.NewSource(1))
	seen := map[string]string{}
	for i := 0; i < 20000; i++ {
		r := make([]rune, rng.Intn(6))
		for j := range r {
			r[j] = alphabet[rng.Intn(len(alphabet))]
		}
		s := string(r)
		got := escapeName(s)
		if why := ferretRefuses(got); why != "" {
			t.Fatalf("escapeName(%q) = %q: FerretDB refuses it (%s)", s, got, why)
		}
		if back := unescapeName(t, got); back != s {
			t.Fatalf("escapeName(%q) = %q decodes to %q", s, got, back)
		}
		if prev, ok := seen[got]; ok && prev != s {
			t.Fatalf("escapeName(%q) = escapeName(%q) = %q", s, prev, got)
		}
		seen[got] = s
		if ferretRefuses(s) == "" && !strings.Contains(s, "%") && got != s {
			t.Fatalf("escapeName(%q) = %q: changed a name FerretDB takes", s, got)
		}
	}
}

// TestBSONString: the BSON form of strings holds no NUL, is injective and
// keeps the byte order.
func TestBSONString(t *testing.T) {
	alphabet := []byte{0, 1, 2, 'a', 0xc3, 0xa9}
	rng := rand.New(rand.NewSource(2))
	gen := func() string {
		b := make([]byte, rng.Intn(5))
		for i := range b {
			b[i] = alphabet[rng.Intn(len(alphabet))]
		}
		return string(b)
	}
	for i := 0; i < 20000; i++ {
		a, b := gen(), gen()
		ea, eb := bsonString(a), bsonString(b)
		if strings.ContainsRune(ea, 0) {
			t.Fatalf("bsonString(%q) = %q holds NUL", a, ea)
		}
		if strings.Compare(a, b) != strings.Compare(ea, eb) {
			t.Fatalf("order of %q, %q is %d, of their forms %q, %q %d", a, b, strings.Compare(a, b), ea, eb, strings.Compare(ea, eb))
		}
	}
	if got := bsonString("plain"); got != "plain" {
		t.Fatalf("bsonString changed a plain string: %q", got)
	}
}
