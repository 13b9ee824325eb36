package dns

import (
	mdns "github.com/miekg/dns"
)

// MaxChain is the most CNAME records one answer follows. A longer chain,
// or a loop, is answered with SERVFAIL.
const MaxChain = 8

// Result is the answer to one question in one view.
type Result struct {
	// Rcode is mdns.RcodeSuccess (also for NODATA), mdns.RcodeNameError
	// (NXDOMAIN) or mdns.RcodeServerFailure (CNAME loop or chain too long).
	Rcode int
	// Authoritative is set when a private zone answered for the question
	// name itself.
	Authoritative bool
	// Answer is the answer section: the CNAME chain, then the data. Its
	// records are shared with the catalog and must not be modified.
	Answer []mdns.RR
	// Ns is the authority section of negative answers from a private zone:
	// the zone's SOA. It is shared like Answer.
	Ns []mdns.RR
}

// Resolve answers the question (name, qtype) in view as the DNS of that
// view would, without any transport concerns. name is case-insensitive,
// with or without the trailing dot. qtype mdns.TypeANY returns every record
// set at the name.
func (c *Catalog) Resolve(view, name string, qtype uint16) Result {
	return c.load().resolve(view, name, qtype)
}

type outcome int

const (
	nxdomain outcome = iota // the name does not exist
	nodata                  // the name exists without data of the type
	found                   // rrs is the data
	alias                   // rrs is one CNAME to follow
)

// step is the outcome of looking up one name (one link of a chain).
type step struct {
	out  outcome
	rrs  []mdns.RR
	auth bool      // from a private zone
	soa  *mdns.SOA // for negative outcomes from a private zone
}

func (s *snapshot) resolve(viewName, qname string, qtype uint16) Result {
	name := mdns.CanonicalName(qname) // no allocation when already canonical
	v := s.views[viewName]
	var res Result
	var seen [MaxChain + 1]string
	for hop := 0; ; hop++ {
		seen[hop] = name
		st := s.lookup(v, name, qtype)
		if hop == 0 {
			res.Authoritative = st.auth
		}
		switch st.out {
		case found:
			res.Answer = append(res.Answer, st.rrs...)
			return res
		case nodata, nxdomain:
			if st.out == nxdomain {
				res.Rcode = mdns.RcodeNameError
			}
			if st.soa != nil {
				res.Ns = []mdns.RR{st.soa}
			}
			return res
		}
		res.Answer = append(res.Answer, st.rrs...)
		target := st.rrs[0].(*mdns.CNAME).Target
		for _, n := range seen[:hop+1] {
			if n == target {
				return Result{Rcode: mdns.RcodeServerFailure}
			}
		}
		if hop+1 >= len(seen) {
			return Result{Rcode: mdns.RcodeServerFailure}
		}
		name = target
	}
}

// lookup answers one name in a view: from the most specific linked private
// zone that contains it, else (or on NXDOMAIN through a NxDomainRedirect
// link) from the public names.
func (s *snapshot) lookup(v *view, name string, qtype uint16) step {
	if z, redirect := s.zoneFor(v, name); z != nil {
		rel, _ := relative(name, z.origin)
		st := lookupTree(&z.tree, rel, name, qtype)
		if st.out != nxdomain || !redirect {
			st.auth = true
			if st.out == nxdomain || st.out == nodata {
				st.soa = z.negSOA
			}
			return st
		}
	}
	rel, _ := relative(name, ".")
	return lookupTree(&s.public.tree, rel, name, qtype)
}

// zoneFor returns the most specific zone linked to v whose origin is name
// or an ancestor of name, and whether its link redirects NXDOMAIN.
func (s *snapshot) zoneFor(v *view, name string) (*zone, bool) {
	if v == nil {
		return nil, false
	}
	for off := 0; ; {
		for _, l := range v.zones[name[off:]] {
			if z := s.zones[l.zone]; z != nil {
				return z, l.redirect
			}
		}
		next, end := mdns.NextLabel(name, off)
		if end {
			return nil, false
		}
		off = next
	}
}

// lookupTree looks name (rel below t's origin) up in one tree.
func lookupTree(t *tree, rel, name string, qtype uint16) step {
	n, wild, exists := t.find(rel)
	if n == nil {
		if exists {
			return step{out: nodata}
		}
		return step{out: nxdomain}
	}
	var rrs []mdns.RR
	out := found
	switch {
	case qtype == mdns.TypeANY:
		for _, s := range n.sets {
			rrs = append(rrs, s.rrs...)
		}
	default:
		rrs = n.get(qtype)
		if len(rrs) == 0 && qtype != mdns.TypeCNAME {
			if c := n.get(mdns.TypeCNAME); len(c) > 0 {
				rrs, out = c[:1], alias
			}
		}
	}
	if len(rrs) == 0 {
		return step{out: nodata}
	}
	if wild {
		rrs = synthesize(rrs, name)
	}
	return step{out: out, rrs: rrs}
}

// synthesize copies wildcard records to the owner name (RFC 4592).
func synthesize(rrs []mdns.RR, owner string) []mdns.RR {
	out := make([]mdns.RR, len(rrs))
	for i, rr := range rrs {
		c := mdns.Copy(rr)
		c.Header().Name = owner
		out[i] = c
	}
	return out
}
