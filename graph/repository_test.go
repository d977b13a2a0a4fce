package graph

import (
	"slices"
	"testing"
)

func TestParseRepository(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Repository
	}{
		{"127.0.0.1:5000/library/alpine", Repository{"127.0.0.1:5000", "library/alpine"}},
		{"registry.example/a/b/c/d", Repository{"registry.example", "a/b/c/d"}},
		{"localhost/x", Repository{"localhost", "x"}},
		// The first element is the registry whatever it looks like.
		{"library/alpine", Repository{"library", "alpine"}},
	} {
		got, err := ParseRepository(tc.in)
		if err != nil {
			t.Fatalf("ParseRepository(%q): %v", tc.in, err)
		}
		if got != tc.want {
			t.Errorf("ParseRepository(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if s := got.String(); s != tc.in {
			t.Errorf("ParseRepository(%q).String() = %q", tc.in, s)
		}
	}
	for _, in := range []string{"alpine", "127.0.0.1:5000", "127.0.0.1:5000/", ""} {
		_, err := ParseRepository(in)
		if err == nil {
			t.Errorf("ParseRepository(%q): no error", in)
			continue
		}
		if want := `"` + in + `" is not host/repository`; err.Error() != want {
			t.Errorf("ParseRepository(%q): error %q, want %q", in, err, want)
		}
	}
}

func TestCompareIsStringOrder(t *testing.T) {
	names := []string{"a/y", "a.b/x", "a:5000/z", "a/x/y", "b/a", "a-b/c"}
	var repos []Repository
	for _, n := range names {
		r, err := ParseRepository(n)
		if err != nil {
			t.Fatal(err)
		}
		repos = append(repos, r)
	}
	slices.SortFunc(repos, Compare)
	var got []string
	for _, r := range repos {
		got = append(got, r.String())
	}
	want := slices.Clone(names)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("sorted by Compare: %v, want string order %v", got, want)
	}
	// Field by field would put "a/y" first ("a" < "a.b"); the string
	// order puts "a.b/x" first.
	if c := Compare(Repository{"a.b", "x"}, Repository{"a", "y"}); c >= 0 {
		t.Errorf("Compare(a.b/x, a/y) = %d, want < 0", c)
	}
	if c := Compare(Repository{"h", "p"}, Repository{"h", "p"}); c != 0 {
		t.Errorf("Compare of equal repositories = %d", c)
	}
}
