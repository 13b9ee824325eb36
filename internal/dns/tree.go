package dns

import (
	"maps"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
)

// typeOrder is the order of record sets inside a node.
var typeOrder = []uint16{
	mdns.TypeA, mdns.TypeAAAA, mdns.TypeCNAME, mdns.TypeMX,
	mdns.TypePTR, mdns.TypeSOA, mdns.TypeSRV, mdns.TypeTXT,
}

// node is the data at one owner name. It is immutable once published.
type node struct {
	sets []rrset // in typeOrder; empty record sets included
}

type rrset struct {
	typ uint16
	rrs []mdns.RR // shared by every answer: never modified
}

func (n *node) get(typ uint16) []mdns.RR {
	for _, s := range n.sets {
		if s.typ == typ {
			return s.rrs
		}
	}
	return nil
}

// tree holds the nodes below one origin (a zone apex, or the root for
// public names), keyed by owner name relative to the origin: lower case,
// without a trailing dot, "" for the origin itself.
type tree struct {
	nodes map[string]*node
	// ents counts, for each proper ancestor of a node below the origin,
	// the nodes under it: such a name exists even without data (an empty
	// non-terminal, RFC 8020).
	ents  map[string]int
	wilds int // nodes whose first label is "*"
}

func newTree() tree {
	return tree{nodes: map[string]*node{}, ents: map[string]int{}}
}

func (t tree) clone() tree {
	return tree{nodes: maps.Clone(t.nodes), ents: maps.Clone(t.ents), wilds: t.wilds}
}

// set stores n at rel, or removes the node at rel when n is nil.
func (t *tree) set(rel string, n *node) {
	_, had := t.nodes[rel]
	switch {
	case n != nil:
		t.nodes[rel] = n
		if had {
			return
		}
	case had:
		delete(t.nodes, rel)
	default:
		return
	}
	d := 1
	if n == nil {
		d = -1
	}
	if isWild(rel) {
		t.wilds += d
	}
	for a := parent(rel); a != ""; a = parent(a) {
		if t.ents[a] += d; t.ents[a] <= 0 {
			delete(t.ents, a)
		}
	}
}

// find returns the node that answers for rel: the node at rel, or the
// wildcard node that synthesizes rel (RFC 4592: "*" under rel's closest
// encloser). exists reports whether rel exists at all (with data, as an
// empty non-terminal, as the origin, or through a wildcard).
func (t *tree) find(rel string) (n *node, wild, exists bool) {
	if n := t.nodes[rel]; n != nil {
		return n, false, true
	}
	if rel == "" || t.ents[rel] > 0 {
		return nil, false, true
	}
	if t.wilds == 0 {
		return nil, false, false
	}
	ce := rel
	for {
		ce = parent(ce)
		if ce == "" || t.nodes[ce] != nil || t.ents[ce] > 0 {
			break
		}
	}
	w := "*"
	if ce != "" {
		w = "*." + ce
	}
	if n := t.nodes[w]; n != nil {
		return n, true, true
	}
	return nil, false, false
}

// parent strips the first label of a relative name; the parent of a
// single label is the origin, "".
func parent(rel string) string {
	off, end := mdns.NextLabel(rel, 0)
	if end {
		return ""
	}
	return rel[off:]
}

func isWild(rel string) bool { return rel == "*" || strings.HasPrefix(rel, "*.") }

// absolute is the owner name of rel below origin.
func absolute(rel, origin string) string {
	switch {
	case rel == "":
		return origin
	case origin == ".":
		return rel + "."
	default:
		return rel + "." + origin
	}
}

// relative returns name (canonical, absolute) relative to origin, and
// whether name is at or below origin.
func relative(name, origin string) (string, bool) {
	switch {
	case name == origin:
		return "", true
	case origin == ".":
		return name[:len(name)-1], true
	case len(name) > len(origin) && strings.HasSuffix(name, origin) && name[len(name)-len(origin)-1] == '.':
		return name[:len(name)-len(origin)-1], true
	default:
		return "", false
	}
}

// zone is one private DNS zone. It is immutable once published.
type zone struct {
	origin string               // canonical, with trailing dot; "" until named
	sets   map[setKey]RecordSet // normalized sources, kept to recompile on rename
	tree   tree                 // compiled; empty while unnamed
	negSOA *mdns.SOA            // authority of negative answers
}

func newZone() *zone {
	return &zone{sets: map[setKey]RecordSet{}, tree: newTree()}
}

func (z *zone) clone() *zone {
	c := *z
	c.sets = maps.Clone(z.sets)
	c.tree = z.tree.clone()
	return &c
}

func (z *zone) rename(origin string) {
	z.origin = origin
	z.tree = newTree()
	rels := map[string]bool{}
	for k := range z.sets {
		rels[k.rel] = true
	}
	for rel := range rels {
		z.rebuild(rel)
	}
	z.updateSOA()
}

func (z *zone) put(n normSet) {
	z.sets[n.key] = n.src
	z.rebuild(n.key.rel)
	if n.key.typ == mdns.TypeSOA {
		z.updateSOA()
	}
}

func (z *zone) remove(k setKey) {
	delete(z.sets, k)
	z.rebuild(k.rel)
	if k.typ == mdns.TypeSOA {
		z.updateSOA()
	}
}

// rebuild compiles the node at rel from the zone's record sets.
func (z *zone) rebuild(rel string) {
	if z.origin == "" {
		return
	}
	owner := absolute(rel, z.origin)
	var n node
	for _, t := range typeOrder {
		if rs, ok := z.sets[setKey{rel, t}]; ok {
			n.sets = append(n.sets, rrset{typ: t, rrs: compile(owner, t, rs)})
		}
	}
	if len(n.sets) == 0 {
		z.tree.set(rel, nil)
		return
	}
	z.tree.set(rel, &n)
}

func (z *zone) updateSOA() {
	if z.origin == "" {
		z.negSOA = nil
		return
	}
	var set *RecordSet
	if rs, ok := z.sets[setKey{"", mdns.TypeSOA}]; ok {
		set = &rs
	}
	z.negSOA = negativeSOA(z.origin, set)
}

// public holds the public names, from every source.
type public struct {
	sources map[string][]normSet
	index   map[string][]string // owner (relative to the root) -> sources, sorted
	tree    tree
}

func newPublic() *public {
	return &public{sources: map[string][]normSet{}, index: map[string][]string{}, tree: newTree()}
}

func (p *public) clone() *public {
	return &public{sources: maps.Clone(p.sources), index: maps.Clone(p.index), tree: p.tree.clone()}
}

// put replaces the sets of source; nil sets delete the source.
func (p *public) put(source string, sets []normSet) {
	affected := map[string]bool{}
	for _, s := range p.sources[source] {
		affected[s.key.rel] = true
	}
	if sets == nil {
		delete(p.sources, source)
	} else {
		p.sources[source] = sets
	}
	has := map[string]bool{}
	for _, s := range sets {
		affected[s.key.rel] = true
		has[s.key.rel] = true
	}
	for rel := range affected {
		srcs := slices.DeleteFunc(slices.Clone(p.index[rel]), func(s string) bool { return s == source })
		if has[rel] {
			i, _ := slices.BinarySearch(srcs, source)
			srcs = slices.Insert(srcs, i, source)
		}
		if len(srcs) == 0 {
			delete(p.index, rel)
		} else {
			p.index[rel] = srcs
		}
		p.rebuild(rel)
	}
}

// rebuild compiles the node at rel: per type, the set of the first source
// that has one.
func (p *public) rebuild(rel string) {
	owner := absolute(rel, ".")
	byType := map[uint16]RecordSet{}
	for _, src := range p.index[rel] {
		for _, s := range p.sources[src] {
			if _, taken := byType[s.key.typ]; s.key.rel == rel && !taken {
				byType[s.key.typ] = s.src
			}
		}
	}
	var n node
	for _, t := range typeOrder {
		if rs, ok := byType[t]; ok {
			n.sets = append(n.sets, rrset{typ: t, rrs: compile(owner, t, rs)})
		}
	}
	if len(n.sets) == 0 {
		p.tree.set(rel, nil)
		return
	}
	p.tree.set(rel, &n)
}
