package storage_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// TestLicense: the repository, the npm package and the OpenAPI document
// all say Apache-2.0, and LICENSE holds its text (the npm package ships a
// copy of it).
func TestLicense(t *testing.T) {
	text, err := os.ReadFile("LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Apache License", "Version 2.0, January 2004", "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION", "END OF TERMS AND CONDITIONS"} {
		if !bytes.Contains(text, []byte(want)) {
			t.Errorf("LICENSE lacks %q", want)
		}
	}
	if copied, err := os.ReadFile("sdk/js/LICENSE"); err != nil || !bytes.Equal(copied, text) {
		t.Errorf("sdk/js/LICENSE is not a copy of LICENSE (err %v)", err)
	}
	var pkg struct{ License string }
	b, err := os.ReadFile("sdk/js/package.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatal(err)
	}
	equal(t, "sdk/js/package.json license", pkg.License, "Apache-2.0")
	var doc struct {
		Info struct{ License struct{ Name, URL string } }
	}
	if b, err = os.ReadFile("openapi.json"); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	equal(t, "openapi.json info.license.name", doc.Info.License.Name, "Apache-2.0")
	equal(t, "openapi.json info.license.url", doc.Info.License.URL, "https://www.apache.org/licenses/LICENSE-2.0")
}
