package verdict

import (
	"fmt"
	"strings"
	"testing"
)

func TestNumCanon(t *testing.T) {
	equal := [][2]string{
		{"1", "1.0"}, {"1e2", "100"}, {"100", "1E+2"}, {"0.5", "5e-1"}, {"-0", "0"}, {"0.000", "0e10"},
		{"0.0012", "1.2e-3"}, {"-12.50", "-125e-1"}, {"10", "1e1"}, {"123456789012345678901234567890", "1.2345678901234567890123456789e29"},
		{"1e0000000000000000000005", "1e5"},
	}
	differ := [][2]string{
		{"1", "2"}, {"1", "-1"}, {"10", "100"}, {"0.1", "1"}, {"1e2", "1e3"}, {"1.5", "15"},
		{"9007199254740993", "9007199254740992"}, {"1e99999999999999999", "1e99999999999999998"},
	}
	for _, p := range equal {
		if a, b := numCanon(nil, []byte(p[0])), numCanon(nil, []byte(p[1])); string(a) != string(b) {
			t.Errorf("%s (%s) and %s (%s) should be equal", p[0], a, p[1], b)
		}
	}
	for _, p := range differ {
		if a, b := numCanon(nil, []byte(p[0])), numCanon(nil, []byte(p[1])); string(a) == string(b) {
			t.Errorf("%s and %s should differ, both %s", p[0], p[1], a)
		}
	}
}

func TestValidateJSONPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		want string // the segments, or "error"
	}{
		{"$", "[]"},
		{"$['items'][3]['price']", "[name items] [index 3] [name price]"},
		{"$.items[3].price", "[name items] [index 3] [name price]"},
		{`$["a b"]`, "[name a b]"},
		{`$['it\'s']['x\\y']['\u00e9']`, `[name it's] [name x\y] [name é]`},
		{"$.items[*].price", "[name items] [wild] [name price]"},
		{"$.*", "[wild]"},
		{"items", "error"},
		{"$..price", "error"},
		{"$.", "error"},
		{"$[", "error"},
		{"$['a'", "error"},
		{"$['a]", "error"},
		{"$[-1]", "error"},
		{"$[1", "error"},
		{"$[*", "error"},
		{"$x", "error"},
		{`$['\q']`, "error"},
	} {
		pat, err := parseJSONPattern(tc.path)
		if (err != nil) != (tc.want == "error") || (ValidateJSONPath(tc.path) != nil) != (err != nil) {
			t.Errorf("%q: error %v, want %s", tc.path, err, tc.want)
			continue
		}
		if err != nil {
			continue
		}
		var segs []string
		for _, s := range pat {
			switch s.kind {
			case segName:
				segs = append(segs, "[name "+s.name+"]")
			case segIndex:
				segs = append(segs, fmt.Sprintf("[index %d]", s.index))
			case segWild:
				segs = append(segs, "[wild]")
			}
		}
		if got := "[" + strings.Join(segs, " ") + "]"; strings.Trim(got, "[]") != strings.Trim(tc.want, "[]") {
			t.Errorf("%q: got %s, want %s", tc.path, got, tc.want)
		}
	}
}

// TestJSONPathRendering checks the normalized paths emitted for awkward
// member names, and that each emitted path, given back as an ignore path,
// removes the difference.
func TestJSONPathRendering(t *testing.T) {
	for _, tc := range []struct {
		name  string
		a, b  string
		field string
	}{
		{"quote", `{"it's":1}`, `{"it's":2}`, `$['it\'s']`},
		{"backslash", `{"a\\b":1}`, `{"a\\b":2}`, `$['a\\b']`},
		{"control", `{"a\nb\u0001":1}`, `{"a\nb\u0001":2}`, `$['a\nb\u0001']`},
		{"escaped name equals plain", `{"\u00e9":{"x":[1]}}`, `{"é":{"x":[2]}}`, `$['é']['x'][0]`},
		{"dot and bracket in name", `{"a.b[0]":1}`, `{"a.b[0]":2}`, `$['a.b[0]']`},
		{"root array", `[[1],[2]]`, `[[1],[3]]`, `$[1][0]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Compare(resp(200, tc.a), resp(200, tc.b), nil)
			if len(got) != 1 || got[0].Field != tc.field {
				t.Fatalf("got %+v, want one difference at %s", got, tc.field)
			}
			if err := ValidateJSONPath(got[0].Field); err != nil {
				t.Fatalf("emitted path %s is not accepted back: %v", got[0].Field, err)
			}
			if again := Compare(resp(200, tc.a), resp(200, tc.b), &CompareOptions{IgnoreJSONPaths: []string{got[0].Field}}); len(again) != 0 {
				t.Errorf("ignoring %s still reports %+v", got[0].Field, again)
			}
		})
	}
}

func TestIgnoreJSONPaths(t *testing.T) {
	a := `{"items":[{"id":1,"at":"t1"},{"id":2,"at":"t2"}],"x":{"y":{"z":1}},"list":[1,2,3]}`
	b := `{"items":[{"id":1,"at":"u1"},{"id":3,"at":"u2"}],"x":{"y":{"z":2}},"list":[1,2,3,4]}`
	all := []string{"body $['items'][0]['at']", "body $['items'][1]['at']", "body $['items'][1]['id']", "body $['list'][3]", "body $['x']['y']['z']"}
	for _, tc := range []struct {
		ignore []string
		want   []string
	}{
		{nil, all},
		{[]string{"$"}, nil},
		{[]string{"$.items[*].at"}, []string{"body $['items'][1]['id']", "body $['list'][3]", "body $['x']['y']['z']"}},
		{[]string{"$['items'][*]['at']", "$.x.y"}, []string{"body $['items'][1]['id']", "body $['list'][3]"}},
		{[]string{"$.items[1]"}, []string{"body $['items'][0]['at']", "body $['list'][3]", "body $['x']['y']['z']"}},
		{[]string{"$.list[3]", "$.*.y", "$.items"}, nil},
		{[]string{"$.list[2]", "$.x.y.z.deeper", "$.items[*].id"}, []string{"body $['items'][0]['at']", "body $['items'][1]['at']", "body $['list'][3]", "body $['x']['y']['z']"}},
	} {
		got := fields(Compare(resp(200, a), resp(200, b), &CompareOptions{IgnoreJSONPaths: tc.ignore}))
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ignore %q: got %v, want %v", tc.ignore, got, tc.want)
		}
	}
}

func TestJSONValueCut(t *testing.T) {
	long := strings.Repeat("é", 600)
	got := Compare(resp(200, `{"s":"`+long+`"}`), resp(200, `{"s":""}`), nil)
	if len(got) != 1 {
		t.Fatalf("got %+v", got)
	}
	p := got[0].Production
	if len(p) > maxJSONValueLen+3 || !strings.HasSuffix(p, "...") || !strings.HasPrefix(p, `"éé`) {
		t.Errorf("value not cut as documented: %d bytes, %q...", len(p), p[:10])
	}
	if strings.ContainsRune(p, '\uFFFD') {
		t.Error("value cut inside a rune")
	}
}
