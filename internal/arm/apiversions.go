package arm

import (
	"fmt"
	"slices"
	"strings"
)

// VersionTable is one provider's api-versions: every version Azure
// publishes for it that privlink accepts, and for the types Azure added
// later, the first version that has them. It is the one place a provider
// says which versions it serves. Every accepted version maps to the one
// internal model (the shapes privlink serves are a superset of each
// version's, and no version in a table means something privlink cannot
// honour), so handlers do not look at the version, with one exception: an
// answer whose shape Azure changed incompatibly in some version (the
// postgres capabilities) is rendered in the request's shape.
//
// Versions are kept newest first, as ARM lists them in a provider's
// resourceTypes (clients such as `az resource` take the first stable one).
type VersionTable struct {
	versions []string          // newest first
	since    map[string]string // lower-cased type → first version that has it
}

// NewVersionTable returns a table of versions (YYYY-MM-DD, optionally
// with a suffix such as -preview). A malformed version panics: the table
// is a literal in the provider's code.
func NewVersionTable(versions ...string) *VersionTable {
	for _, v := range versions {
		if !validVersion(v) {
			panic(fmt.Sprintf("arm: malformed api-version %q", v))
		}
	}
	vs := slices.Clone(versions)
	SortAPIVersions(vs)
	return &VersionTable{versions: slices.Compact(vs), since: map[string]string{}}
}

// Since records that typ appears in first and in every later version of
// the table, and returns the table.
func (t *VersionTable) Since(typ, first string) *VersionTable {
	if !slices.Contains(t.versions, first) {
		panic(fmt.Sprintf("arm: %s: api-version %q is not in the table", typ, first))
	}
	t.since[strings.ToLower(typ)] = first
	return t
}

// All returns every version of the table, newest first.
func (t *VersionTable) All() []string { return slices.Clone(t.versions) }

// For returns the versions that serve typ, newest first.
func (t *VersionTable) For(typ string) []string {
	first, ok := t.since[strings.ToLower(typ)]
	if !ok {
		return t.All()
	}
	var out []string
	for _, v := range t.versions {
		if CompareAPIVersions(v, first) >= 0 {
			out = append(out, v)
		}
	}
	return out
}

// SortAPIVersions sorts api-versions newest first; of one date, the
// stable version comes before its previews.
func SortAPIVersions(vs []string) {
	slices.SortStableFunc(vs, func(a, b string) int { return CompareAPIVersions(b, a) })
}

// CompareAPIVersions orders api-versions by date, and a stable version
// after (newer than) a preview of the same date: -1 when a is older than
// b, 0 when they are the same (whatever their case), 1 when a is newer.
func CompareAPIVersions(a, b string) int {
	da, sa := splitVersion(a)
	db, sb := splitVersion(b)
	if c := strings.Compare(da, db); c != 0 {
		return c
	}
	switch {
	case sa == sb:
		return 0
	case sa == "":
		return 1
	case sb == "":
		return -1
	}
	return strings.Compare(sa, sb)
}

func splitVersion(v string) (date, suffix string) {
	v = strings.ToLower(v)
	if len(v) < len("2006-01-02") {
		return v, ""
	}
	return v[:10], strings.TrimPrefix(v[10:], "-")
}

// validVersion reports whether v looks like an ARM api-version.
func validVersion(v string) bool {
	if len(v) < 10 {
		return false
	}
	for i, c := range v[:10] {
		if i == 4 || i == 7 {
			if c != '-' {
				return false
			}
		} else if c < '0' || c > '9' {
			return false
		}
	}
	rest := v[10:]
	if rest == "" {
		return true
	}
	if rest[0] != '-' || len(rest) < 2 {
		return false
	}
	for _, c := range rest[1:] {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
