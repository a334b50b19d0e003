package verdict

import "strconv"

// CompareOptions say what is compared for one route.
type CompareOptions struct {
	// IgnoreHeaders are canonical header names never compared (the default
	// noise list plus --ignore-header).
	IgnoreHeaders map[string]bool
	// IgnoreJSONPaths are normalized JSON paths removed before comparing
	// bodies (--ignore-json-path for this route or every route).
	IgnoreJSONPaths []string
	// Host is the request's Host: a Location naming it (any scheme) is
	// compared by its path and query only.
	Host string
	// Method is the request method: HEAD answers have no body.
	Method string
	// MaxPaths bounds the JSON paths reported per exchange (default 20).
	MaxPaths int
}

// Compare returns the differences between production's response and
// another answer, after the ignore rules; empty when they are the same.
//
// Placeholder: status only. The full comparison (headers, cookies, bodies)
// replaces it.
func Compare(prod, other *Response, opt *CompareOptions) []Difference {
	var out []Difference
	if prod.Status != other.Status {
		out = append(out, Difference{Kind: KindStatus, Field: "status",
			Production: strconv.Itoa(prod.Status), Shadow: strconv.Itoa(other.Status)})
	}
	return out
}
