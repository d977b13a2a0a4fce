package planfile

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"testing"
)

// The canonical layout's own decoder gives what encoding/json gives, and
// a plan in another layout (pretty-printed, escapes) still reads.
func TestParseCanonicalSameAsJSON(t *testing.T) {
	small, err := os.ReadFile("testdata/small.json")
	if err != nil {
		t.Fatal(err)
	}
	viaJSON := func(data []byte) *Plan {
		t.Helper()
		var p Plan
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		return &p
	}
	empty := &Plan{Version: Version, Registry: "127.0.0.1:5000"}
	var emptyBuf bytes.Buffer
	if err := empty.Encode(&emptyBuf); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"small": small, "empty": emptyBuf.Bytes()} {
		fast, ok := parseCanonical(string(data))
		if !ok {
			t.Fatalf("%s: the canonical decoder refuses Encode's output", name)
		}
		if want := viaJSON(data); !reflect.DeepEqual(fast, want) {
			t.Errorf("%s: canonical decoder gives\n%+v\nencoding/json gives\n%+v", name, fast, want)
		}
	}
	// Other layouts: the canonical decoder declines, Parse still reads
	// them, to the same plan.
	var indented bytes.Buffer
	if err := json.Indent(&indented, small, "", "\t"); err != nil {
		t.Fatal(err)
	}
	escaped := bytes.Replace(small, []byte(`"application/`), []byte(`"applic\u0061tion/`), 1)
	for name, data := range map[string][]byte{"indented": indented.Bytes(), "escaped": escaped, "trailing space": append(slices.Clone(small), ' ')} {
		if _, ok := parseCanonical(string(data)); ok {
			t.Errorf("%s: the canonical decoder accepts a non-canonical layout", name)
		}
		p, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := viaJSON(small); !reflect.DeepEqual(p, want) {
			t.Errorf("%s: Parse gives a different plan", name)
		}
	}
}
