package daemon_test

import (
	"bytes"
	"encoding/json"
	"hash/crc32"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/daemon/daemontest"
)

// FuzzRequestBodies sends fuzzed bodies to every request that takes one —
// each resource type's PUT and PATCH and each POST action, as the
// fixtures address them — through the whole API (every provider, real
// identity, the Owner's token, a bolt store). The router is called
// directly, so a panic in any decoder or handler fails the target rather
// than being recovered by net/http. Every answer must come within a
// bounded time and not be a 5xx (a 500 is an error no handler turned into
// an ARM error); an answer that is not valid JSON fails too; and a
// refused request (4xx) must leave the store exactly as it was: no
// half-written state.
//
// The first argument names the request ("PUT Microsoft.Network/
// virtualNetworks"); a name the fuzzer mutates picks one by its hash, so
// every input reaches some decoder. Successful writes stay: later inputs
// meet the state earlier ones made.
func FuzzRequestBodies(f *testing.F) {
	fz := newBodyFuzz(f)
	for _, c := range fz.targets {
		valid, err := json.Marshal(c.body)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c.name, valid)
		for _, s := range []string{"{}", "null", "[]", `{"properties":null}`, `{"properties":{"x":1e999}}`, `{"location":"","tags":{"":""}}`} {
			f.Add(c.name, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, name string, body []byte) {
		fz.send(t, fz.target(name), body)
	})
}

// FuzzRequestFields is FuzzRequestBodies with bodies that stay valid JSON:
// it takes a request's valid body and replaces the value at one place
// (every value of the body, nested, and every array element, numbered in
// a walk) with another of any JSON type (null, "", the fuzzed string, a
// negative, huge or fractional number, a boolean, an empty or a nested
// object or array), or drops it. So it reaches the checks behind the JSON
// decoder: missing, null and mistyped properties of every provider.
func FuzzRequestFields(f *testing.F) {
	fz := newBodyFuzz(f)
	for i, c := range fz.targets {
		for kind := range len(replacements) {
			f.Add(c.name, uint16(i*7+kind), uint8(kind), "x")
		}
	}
	f.Fuzz(func(t *testing.T, name string, at uint16, kind uint8, s string) {
		c := fz.target(name)
		var body any
		raw, _ := json.Marshal(c.body)
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Fatal(err)
		}
		n := countValues(body)
		if n == 0 {
			return
		}
		body = replaceValue(body, int(at)%n, replacements[int(kind)%len(replacements)](s))
		out, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		fz.send(t, c, out)
	})
}

// bodyFuzz is the API the body fuzz targets write to, and the requests
// that take a body.
type bodyFuzz struct {
	a       *daemontest.API
	logs    *syncBuffer
	auth    string
	targets []namedCell
	byName  map[string]namedCell
}

type namedCell struct {
	cell
	name string // "PUT Microsoft.Network/virtualNetworks"
}

// newBodyFuzz starts an API with a populated group and collects every
// write of every type's fixture.
func newBodyFuzz(f *testing.F) *bodyFuzz {
	fz := &bodyFuzz{logs: &syncBuffer{}, byName: map[string]namedCell{}}
	fz.a = daemontest.New(f, daemontest.WithLog(fz.logs))
	e := newEnv(fz.a)
	g := e.rg("fuzz")
	e.populate(f, g)
	for _, typ := range fz.a.Router.Types() {
		tc, ok := e.cells(f, typ, g)
		if !ok {
			continue
		}
		for _, c := range tc.cells {
			if c.write {
				nc := namedCell{cell: c, name: c.verb + " " + typ.Type}
				fz.targets = append(fz.targets, nc)
				fz.byName[nc.name] = nc
			}
		}
	}
	if len(fz.targets) == 0 {
		f.Fatal("no request takes a body")
	}
	fz.auth = "Bearer " + fz.a.Owner.Token(f)
	return fz
}

// target is the request named name, or one picked by the name's hash.
func (fz *bodyFuzz) target(name string) namedCell {
	if c, ok := fz.byName[name]; ok {
		return c
	}
	return fz.targets[crc32.ChecksumIEEE([]byte(name))%uint32(len(fz.targets))]
}

// send sends body with c's method to c's path as the Owner and checks the
// answer: in bounded time, no 5xx, JSON, and no store change on a 4xx.
func (fz *bodyFuzz) send(t *testing.T, c namedCell, body []byte) {
	fz.logs.Reset()
	before := dump(t, fz.a.Store)
	w := fz.serve(t, c.method, c.path, body)
	if w.Code >= 500 {
		t.Fatalf("%s %s with %q: %d %s\nlog: %s", c.method, c.path, body, w.Code, w.Body, fz.logs)
	}
	if w.Body.Len() > 0 && !json.Valid(w.Body.Bytes()) {
		t.Fatalf("%s %s with %q: %d, not JSON: %q", c.method, c.path, body, w.Code, w.Body)
	}
	if w.Code >= 400 {
		if diff := dumpDiff(before, dump(t, fz.a.Store)); diff != "" {
			t.Fatalf("%s %s with %q was refused (%d %s) but changed the store: %s", c.method, c.path, body, w.Code, w.Body, diff)
		}
		return
	}
	if c.method == http.MethodPost {
		return
	}
	// What was accepted must read back: the resource, its collection and
	// the generic list of its group, which decode every document.
	id, err := arm.ParseID(c.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{c.path, c.path[:strings.LastIndex(c.path, "/")], id.ResourceGroupID().String() + "/resources"} {
		if r := fz.serve(t, http.MethodGet, path, nil); r.Code >= 500 || r.Code == http.StatusNotFound && path == c.path {
			t.Fatalf("%s %s with %q was accepted (%d), then GET %s: %d %s\nlog: %s", c.method, c.path, body, w.Code, path, r.Code, r.Body, fz.logs)
		}
	}
}

// serve sends one request as the Owner straight to the router, so that a
// panic is not recovered, and waits for the answer a bounded time.
func (fz *bodyFuzz) serve(t *testing.T, method, path string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, fz.a.URL+path+apiVersion(path), bytes.NewReader(body))
	req.Header.Set("Authorization", fz.auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fz.a.Router.ServeHTTP(w, req)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%s %s: no answer within a minute to %q", method, path, body)
	}
	return w
}

// dropValue, as a replacement, removes the property or array element.
type dropValue struct{}

// replacements are the values FuzzRequestFields puts in a body.
var replacements = []func(s string) any{
	func(string) any { return nil },
	func(string) any { return "" },
	func(s string) any { return s },
	func(string) any { return -1 },
	func(string) any { return 1e300 },
	func(string) any { return 0.5 },
	func(string) any { return true },
	func(string) any { return map[string]any{} },
	func(string) any { return []any{} },
	func(s string) any { return []any{nil, s} },
	func(s string) any { return map[string]any{"id": s, "properties": nil} },
	func(string) any { return dropValue{} },
}

// countValues is the number of places replaceValue can number in v.
func countValues(v any) int {
	n := 0
	switch v := v.(type) {
	case map[string]any:
		for _, c := range v {
			n += 1 + countValues(c)
		}
	case []any:
		for _, c := range v {
			n += 1 + countValues(c)
		}
	}
	return n
}

// replaceValue replaces the value at place i of v (in the order of a walk
// over sorted keys) with r, or drops it if r is dropValue.
func replaceValue(v any, i int, r any) any {
	var walk func(v any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				if i == 0 {
					if _, drop := r.(dropValue); drop {
						delete(v, k)
					} else {
						v[k] = r
					}
					i = -1
					return v
				}
				i--
				v[k] = walk(v[k])
				if i < 0 {
					return v
				}
			}
		case []any:
			for j := range v {
				if i == 0 {
					i = -1
					if _, drop := r.(dropValue); drop {
						return slices.Delete(v, j, j+1)
					}
					v[j] = r
					return v
				}
				i--
				v[j] = walk(v[j])
				if i < 0 {
					return v
				}
			}
		}
		return v
	}
	return walk(v)
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
