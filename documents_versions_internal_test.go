package storage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// TestMergePatchRFC7396 runs the examples of RFC 7396 appendix A through
// mergePatch, and checks that it keeps the text and order of what the
// patch does not touch.
func TestMergePatchRFC7396(t *testing.T) {
	compact := func(s string) []byte {
		var b bytes.Buffer
		if err := json.Compact(&b, []byte(s)); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return b.Bytes()
	}
	for _, tc := range []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
		// Text and order kept; names compared decoded; new members appended.
		{`{"z":1.0,"\u0061":"\u00e9","m":{"k":1e2,"j":[1,{"x":null}]},"s":"a,b:}{"}`, `{"a":"x","m":{"k":null,"n":{"p":null,"q":"<&>"}},"new":true}`,
			`{"z":1.0,"\u0061":"x","m":{"j":[1,{"x":null}],"n":{"q":"<&>"}},"s":"a,b:}{","new":true}`},
	} {
		got := string(mergePatch(compact(tc.target), compact(tc.patch)))
		if got != tc.want {
			t.Errorf("merge %s into %s = %s, want %s", tc.patch, tc.target, got, tc.want)
		}
	}
	// Many members take the indexed path.
	var target, patch, want bytes.Buffer
	target.WriteString("{")
	patch.WriteString("{")
	want.WriteString("{")
	for i := 0; i < 40; i++ {
		if i > 0 {
			target.WriteString(",")
		}
		target.WriteString(fmt.Sprintf(`"f%02d":1`, i))
	}
	patch.WriteString(`"f01":null,"f02":2,"new":3}`)
	target.WriteString("}")
	for i := 0; i < 40; i++ {
		switch i {
		case 1:
			continue
		case 2:
			want.WriteString(`"f02":2,`)
			continue
		}
		want.WriteString(fmt.Sprintf(`"f%02d":1,`, i))
	}
	want.WriteString(`"new":3}`)
	if got := string(mergePatch(target.Bytes(), patch.Bytes())); got != want.String() {
		t.Errorf("many members: got %s, want %s", got, want.String())
	}
}

// TestDocTagRoundTrip: an ETag reads back as its version; other tags
// never do.
func TestDocTagRoundTrip(t *testing.T) {
	for _, g := range []docTag{{ver: newVersion(), updated: 1700000000123}, {ver: "", updated: 5}} {
		back, ok := parseDocTag(g.etag())
		if !ok || back != g {
			t.Errorf("%+v -> %s -> %+v, %v", g, g.etag(), back, ok)
		}
	}
	for _, s := range []string{`"x"`, `W/"0000000000000000000000000000000a"`, `"0000000000000000000000000000000A"`, `0000000000000000000000000000000a`, `"000000000000000000000000000000a"`} {
		if _, ok := parseDocTag(s); ok {
			t.Errorf("%s parsed as a version", s)
		}
	}
}
