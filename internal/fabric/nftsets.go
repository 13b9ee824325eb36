package fabric

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// How the data path's changes reach the kernel. google/nftables v0.3.0
// sends a batch (nftables.Conn.Flush) in one sendmsg, which fails with
// EMSGSIZE once it is larger than the socket's send buffer (212 KiB by
// default), and encodes a message's elements in one netlink attribute,
// whose 16-bit length silently wraps past 64 KiB. So:
//
//   - the fabric's nftables sockets ask for an 8 MiB send buffer
//     (SO_SNDBUFFORCE, as root; SO_SNDBUF, capped at net.core.wmem_max,
//     if refused), which holds the elements of some 40,000 translations:
//     any change privlink makes is one atomic batch in practice;
//   - a message carries at most elemsPerMessage elements;
//   - a change larger than half the send buffer is split into several
//     batches, each translation's elements in one, deletions first and
//     additions after (see convergeTable), so that every state in between
//     is safe: a translation never has its DNAT element without its guard
//     and SNAT elements.
const (
	nftSendBuffer   = 8 << 20
	nftRecvBuffer   = 4 << 20
	elemsPerMessage = 256
	// elemOverhead bounds the bytes an element costs in a message beyond
	// its key, key end, data and comment (attribute headers).
	elemOverhead = 64
)

// FaultPoint names a step of the data path's programming that a test can
// make fail (SetFaultHook).
type FaultPoint string

// The fault points.
const (
	// FaultProgram is every nftables batch that changes a router's
	// translations: its chains and sets, or their elements.
	FaultProgram FaultPoint = "program"
	// FaultBlock is the batch that, after a FaultProgram batch failed,
	// holds the translations it was withdrawing closed.
	FaultBlock FaultPoint = "block"
)

// SetFaultHook makes the fabric call hook before each batch of a fault
// point is sent, in the namespace named: a non-nil error fails the batch
// (as if the kernel had refused it) with that error. nil removes the hook.
// It exists for tests (fault injection); nothing else should call it.
func (f *Fabric) SetFaultHook(hook func(point FaultPoint, namespace string) error) {
	if hook == nil {
		f.fault.Store(nil)
		return
	}
	f.fault.Store(&hook)
}

// injected returns the error the fault hook asks for at point in ns.
func (f *Fabric) injected(point FaultPoint, ns string) error {
	if h := f.fault.Load(); h != nil {
		if err := (*h)(point, ns); err != nil {
			return fmt.Errorf("injected fault at %s: %w", point, err)
		}
	}
	return nil
}

// TranslationError reports the translations of an EnsureEndpoints or
// EnsurePublic call that are not as asked. A translation of the call that
// it does not name is in place.
type TranslationError struct {
	// Router is the namespace of the router.
	Router string
	// Failed holds, by translation name, why it is not as asked: a wanted
	// translation that could not be programmed (or whose service link
	// could not be made), or a withdrawn one that could be neither removed
	// nor held closed, whose path may still be open.
	Failed map[string]error
	// Held names withdrawn translations whose removal failed but whose
	// path is held closed (their marks are in the blocked set: no new
	// connection is translated, no packet passes the guard) until an
	// Ensure removes them.
	Held []string
	// Err joins what failed.
	Err error
}

func (e *TranslationError) Error() string {
	var b strings.Builder // e.Err names the namespace
	if len(e.Failed) > 0 {
		fmt.Fprintf(&b, "%d translations not in place (%s): ", len(e.Failed), strings.Join(firstNames(e.Failed, 5), ", "))
	}
	if len(e.Held) > 0 {
		fmt.Fprintf(&b, "%d withdrawn translations held closed: ", len(e.Held))
	}
	b.WriteString(strings.ReplaceAll(e.Err.Error(), "\n", "; "))
	return b.String()
}

func (e *TranslationError) Unwrap() error { return e.Err }

// firstNames returns the first n names of m, sorted, and "…" if more.
func firstNames(m map[string]error, n int) []string {
	names := slices.Sorted(maps.Keys(m))
	if len(names) > n {
		names = append(names[:n], "…")
	}
	return names
}

// nftConn opens a lasting nftables connection whose socket lives in r's
// namespace. Close it with CloseLasting.
func nftConn(r *nsRef) (*nftables.Conn, error) {
	c, _, err := nftConnSized(r)
	return c, err
}

// nftConnSized is nftConn that also returns the socket's send buffer, in
// bytes (as the kernel accounts it: twice what was asked).
func nftConnSized(r *nsRef) (*nftables.Conn, int, error) {
	var c *nftables.Conn
	sndbuf := 0
	buffers := func(nc *netlink.Conn) error {
		rc, err := nc.SyscallConn()
		if err != nil {
			return err
		}
		return rc.Control(func(fd uintptr) {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, nftSendBuffer) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, nftSendBuffer)
			}
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, nftRecvBuffer) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, nftRecvBuffer)
			}
			sndbuf, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		})
	}
	err := r.do(func() error {
		var err error
		c, err = nftables.New(nftables.AsLasting(), nftables.WithSockOptions(buffers))
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("nftables connection: %w", err)
	}
	return c, sndbuf, nil
}

// nftBatchBudget is how many bytes of elements one batch may carry on a
// socket whose send buffer is sndbuf: half of it, for headers and margin.
func nftBatchBudget(sndbuf int) int {
	return max(sndbuf/2, 64<<10)
}

// tableState is what readTable found of a spec's objects.
type tableState struct {
	exists bool
	chains map[string]*nftables.Chain
	// extraChains are chains of a table the spec owns whole (ownsChains)
	// that the spec lacks.
	extraChains []*nftables.Chain
	comments    map[string][]string // rule comments by chain
	// legacy are named counters of ours: translations had them before
	// they became set elements.
	legacy []*nftables.NamedObj
	sets   map[string]*setState // ours, by name
}

type setState struct {
	set   *nftables.Set
	elems []nftables.SetElement // nil for a dynamic set
}

func readTable(c *nftables.Conn, spec tableSpec) (*tableState, error) {
	st := &tableState{chains: map[string]*nftables.Chain{}, comments: map[string][]string{}, sets: map[string]*setState{}}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	name := spec.tableName()
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == name }) {
		return st, nil
	}
	st.exists = true
	table := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	for _, ch := range chains {
		if ch.Table.Name != name {
			continue
		}
		if !slices.ContainsFunc(spec.chains, func(cs chainSpec) bool { return cs.name == ch.Name }) {
			if spec.ownsChains {
				st.extraChains = append(st.extraChains, ch)
			}
			continue
		}
		st.chains[ch.Name] = ch
		if st.comments[ch.Name], err = ruleComments(c, ch); err != nil {
			return nil, err
		}
	}
	objs, err := c.GetNamedObjects(table)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if no, ok := o.(*nftables.NamedObj); ok && no.Type == nftables.ObjTypeCounter && no.Table.Name == name && strings.HasPrefix(no.Name, spec.objPrefix) {
			st.legacy = append(st.legacy, no)
		}
	}
	sets, err := setsOf(c, name, spec.objPrefix)
	if err != nil {
		return nil, err
	}
	for name, s := range sets {
		ss := &setState{set: s}
		if !s.Dynamic {
			if ss.elems, err = c.GetSetElements(s); err != nil {
				return nil, fmt.Errorf("set %s: %w", name, err)
			}
		}
		st.sets[name] = ss
	}
	return st, nil
}

// chainMatches reports whether the chain exists as cs describes it, with
// cs's rules (by their comments, in order).
func (st *tableState) chainMatches(cs chainSpec) bool {
	ch := st.chains[cs.name]
	if ch == nil || !chainDefMatches(ch, cs) {
		return false
	}
	want := make([]string, len(cs.rules))
	for i, r := range cs.rules {
		want[i] = r.comment
	}
	return slices.Equal(st.comments[cs.name], want)
}

func chainDefMatches(ch *nftables.Chain, cs chainSpec) bool {
	if cs.hook == nil { // a regular chain
		return ch.Hooknum == nil
	}
	return ch.Type == cs.typ && ch.Hooknum != nil && *ch.Hooknum == *cs.hook &&
		ch.Priority != nil && *ch.Priority == *cs.priority &&
		ch.Policy != nil && *ch.Policy == nftables.ChainPolicyAccept
}

// setMatches reports whether the set exists as ss defines it. (A set's
// counter flag cannot be read back; elements without counters tell.)
func (st *tableState) setMatches(ss setSpec) bool {
	cur := st.sets[ss.name]
	if cur == nil {
		return false
	}
	s := cur.set
	if s.Dynamic != ss.dynamic || s.IsMap != ss.isMap || s.Interval != ss.interval ||
		s.Concatenation != isConcat(ss.key) || s.KeyType.Name != ss.key.Name || s.KeyType.Bytes != ss.key.Bytes {
		return false
	}
	if ss.isMap && (s.DataType.Name != ss.data.Name || s.DataType.Bytes != ss.data.Bytes) {
		return false
	}
	return !ss.counter || !slices.ContainsFunc(cur.elems, func(e nftables.SetElement) bool { return e.Counter == nil })
}

func isConcat(t nftables.SetDatatype) bool { return strings.Contains(t.Name, " . ") }

// elemOp is one element to add to or delete from a set.
type elemOp struct {
	set  *nftables.Set
	del  bool
	elem nftables.SetElement
}

// opGroup are the element operations of one translation (the elements'
// comment) in one phase of a change.
type opGroup struct {
	name string
	del  bool // a group of deletions
	ops  []elemOp
	size int // estimated bytes
}

// convergeResult is what convergeTable did.
type convergeResult struct {
	// changed tells whether it wrote; batches counts the batches of
	// elements it sent.
	changed bool
	batches int
	// failed and held are as in TranslationError; err joins the failures
	// (nil: the table is the spec's).
	failed map[string]error
	held   []string
	err    error
}

// convergeTable makes the data path's objects in r's table match spec,
// changing only what differs:
//
//   - chains whose rules differ are rewritten, sets that are missing or
//     defined otherwise are (re)created, objects of ours the spec lacks
//     (counters of translations from before sets, sets) deleted: one
//     batch, which is all a change of the table's shape ever needs (a
//     first Ensure, a drift, an upgrade); sets it recreates start empty;
//   - then the elements: those of translations that went or changed are
//     deleted, those of new or changed ones added, the blocked set's
//     emptied last. In one batch when it fits nftBatchBudget, else in
//     several, each translation's elements in one, in that order.
//
// When a batch fails, the translations of that batch and of the batches
// after it are not as spec wants (failed): and those whose elements it was
// deleting (withdrawn, or changed and so leading elsewhere) are held
// closed: their marks go into the blocked set, in a batch of its own and
// as small as can be; if even that fails, they are failed with both errors.
func (f *Fabric) convergeTable(r *nsRef, spec tableSpec) convergeResult {
	wanted := map[string]bool{}
	for _, ss := range spec.sets {
		if ss.name == spec.dnatSet() {
			for _, e := range ss.elems {
				wanted[e.Comment] = true
			}
		}
	}
	fail := func(err error) convergeResult {
		res := convergeResult{failed: map[string]error{}, err: err}
		for name := range wanted {
			res.failed[name] = err
		}
		return res
	}
	c, sndbuf, err := nftConnSized(r)
	if err != nil {
		return fail(fmt.Errorf("namespace %s: %w", r.name, err))
	}
	defer c.CloseLasting()
	cur, err := readTable(c, spec)
	if err != nil {
		return fail(fmt.Errorf("namespace %s: read nftables table %s: %w", r.name, spec.tableName(), err))
	}
	table := &nftables.Table{Name: spec.tableName(), Family: nftables.TableFamilyINet}
	var res convergeResult

	// The shape.
	sets, fresh, shaped, err := f.shapeTable(c, r, table, cur, spec)
	if err != nil {
		res = fail(fmt.Errorf("namespace %s: update nftables table %s: %w", r.name, spec.tableName(), err))
		// What the elements' deletions would have been, as the table is.
		f.holdClosed(c, r, cur, spec, elementGroups(cur, spec, sets, nil), &res)
		return res
	}
	res.changed = shaped
	groups := elementGroups(cur, spec, sets, fresh)

	// The elements.
	budget := nftBatchBudget(sndbuf)
	if f.batchBudget > 0 {
		budget = f.batchBudget
	}
	for start := 0; start < len(groups); {
		end, size := start, 0
		for end < len(groups) && (end == start || size+groups[end].size <= budget) {
			size += groups[end].size
			end++
		}
		batch := groups[start:end]
		err := f.injected(FaultProgram, r.name)
		if err == nil {
			err = flushElements(c, batch)
		}
		if err != nil {
			err = fmt.Errorf("namespace %s: update the elements of nftables table %s: %w", r.name, spec.tableName(), err)
			res.err = err
			res.failed = map[string]error{}
			for _, g := range groups[start:] {
				if g.name != "" && (wanted[g.name] || g.del) {
					res.failed[g.name] = err
				}
			}
			f.holdClosed(c, r, cur, spec, groups[start:], &res)
			return res
		}
		res.changed = true
		res.batches++
		start = end
	}
	return res
}

// shapeTable converges the table's chains and set definitions (see
// convergeTable) in one batch. It returns the sets to put elements in, by
// name (the spec's sets that exist as they should, and those it created),
// the names of those it created (empty), and whether it wrote.
func (f *Fabric) shapeTable(c *nftables.Conn, r *nsRef, table *nftables.Table, cur *tableState, spec tableSpec) (sets map[string]*nftables.Set, fresh map[string]bool, changed bool, err error) {
	sets, fresh = map[string]*nftables.Set{}, map[string]bool{}
	var recreate []setSpec
	for _, ss := range spec.sets {
		if cur.setMatches(ss) {
			sets[ss.name] = cur.sets[ss.name].set
		} else {
			recreate = append(recreate, ss)
		}
	}
	var extra []*nftables.Set
	for name, s := range cur.sets {
		if !slices.ContainsFunc(spec.sets, func(ss setSpec) bool { return ss.name == name }) {
			extra = append(extra, s.set)
		}
	}
	shaped := cur.exists && len(recreate) == 0 && len(extra) == 0 && len(cur.legacy) == 0 && len(cur.extraChains) == 0 &&
		!slices.ContainsFunc(spec.chains, func(cs chainSpec) bool { return !cur.chainMatches(cs) })
	if shaped {
		return sets, fresh, false, nil
	}
	c.AddTable(table)
	policy := nftables.ChainPolicyAccept
	// A set that is recreated may be referred to by any chain: then all
	// are rewritten.
	rewrite := map[string]*nftables.Chain{}
	for _, cs := range spec.chains {
		if len(recreate) == 0 && len(extra) == 0 && cur.chainMatches(cs) {
			continue
		}
		if old := cur.chains[cs.name]; old != nil && !chainDefMatches(old, cs) {
			c.FlushChain(old)
			c.DelChain(old)
		}
		def := &nftables.Chain{Name: cs.name, Table: table}
		if cs.hook != nil {
			def.Type, def.Hooknum, def.Priority, def.Policy = cs.typ, cs.hook, cs.priority, &policy
		}
		ch := c.AddChain(def)
		c.FlushChain(ch)
		rewrite[cs.name] = ch
	}
	// Chains of ours the spec lacks may refer to sets that go.
	for _, ss := range recreate {
		if old := cur.sets[ss.name]; old != nil {
			c.DelSet(old.set)
		}
		s := &nftables.Set{ID: nextSetID(), Table: table, Name: ss.name, KeyType: ss.key, DataType: ss.data, IsMap: ss.isMap,
			Interval: ss.interval, Concatenation: isConcat(ss.key), Counter: ss.counter, Dynamic: ss.dynamic}
		if ss.dynamic {
			s.Size = refusedSetSize
		}
		if err := c.AddSet(s, nil); err != nil {
			return sets, fresh, false, fmt.Errorf("set %s: %w", ss.name, err)
		}
		sets[ss.name], fresh[ss.name] = s, true
	}
	for _, cs := range spec.chains {
		ch := rewrite[cs.name]
		if ch == nil {
			continue
		}
		for _, rule := range cs.rules {
			c.AddRule(&nftables.Rule{
				Table:    table,
				Chain:    ch,
				Exprs:    rule.exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, rule.comment),
			})
		}
	}
	// What the spec no longer has goes last, once no rule refers to it.
	for _, o := range cur.legacy {
		c.DeleteObject(&nftables.NamedObj{Table: table, Name: o.Name, Type: nftables.ObjTypeCounter})
	}
	for _, ch := range cur.extraChains {
		c.FlushChain(ch)
	}
	for _, ch := range cur.extraChains {
		c.DelChain(ch)
	}
	for _, s := range extra {
		c.DelSet(s)
	}
	if err := f.injected(FaultProgram, r.name); err != nil {
		return sets, fresh, false, err
	}
	if err := c.Flush(); err != nil {
		return sets, fresh, false, err
	}
	return sets, fresh, true, nil
}

// elementGroups returns the element operations that take the sets from
// cur to spec, grouped by translation: deletions, then additions, then the
// deletions of the blocked set's elements. Sets named in fresh were just
// created: they are empty. Sets not in sets are left out.
func elementGroups(cur *tableState, spec tableSpec, sets map[string]*nftables.Set, fresh map[string]bool) []opGroup {
	var dels, adds, unblock []opGroup
	index := map[string]int{}
	put := func(list *[]opGroup, tag string, name string, op elemOp) {
		k := tag + "\x00" + name
		i, ok := index[k]
		if !ok {
			i = len(*list)
			index[k] = i
			*list = append(*list, opGroup{name: name, del: op.del})
		}
		g := &(*list)[i]
		g.ops = append(g.ops, op)
		g.size += elemOverhead + len(op.elem.Key) + len(op.elem.KeyEnd) + len(op.elem.Val) + len(op.elem.Comment)
	}
	for _, ss := range spec.sets {
		s := sets[ss.name]
		if ss.dynamic || s == nil {
			continue
		}
		have := map[string]nftables.SetElement{}
		if st := cur.sets[ss.name]; st != nil && !fresh[ss.name] {
			for _, e := range st.elems {
				have[elementID(e)] = e
			}
		}
		want := map[string]nftables.SetElement{}
		for _, e := range ss.elems {
			want[elementID(e)] = e
		}
		same := func(a, b nftables.SetElement) bool {
			return slices.Equal(a.Val, b.Val) && a.Comment == b.Comment
		}
		// An interval set of start and end elements whose intervals
		// changed is replaced whole: the old elements go and the new
		// ones come, in one group (one batch). Changing single elements
		// could split an interval, or grow one across a kept end, which
		// the kernel refuses (EEXIST) while the old interval is there.
		replace := startEndIntervals(have, want) && !sameElements(have, want, same)
		kept := func(other map[string]nftables.SetElement, id string, e nftables.SetElement) bool {
			o, ok := other[id]
			return ok && same(o, e) && !replace
		}
		// An interval's end (which carries no comment) goes in the group
		// of its start, just before it in key order: the kernel refuses a
		// start that follows another start without an end between them.
		owner := func(group *string, e nftables.SetElement) string {
			if !e.IntervalEnd || e.Comment != "" {
				*group = e.Comment
			}
			return *group
		}
		group := ""
		for _, id := range slices.Sorted(maps.Keys(have)) {
			e := have[id]
			g := owner(&group, e)
			if kept(want, id, e) {
				continue
			}
			del := nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd, IntervalEnd: e.IntervalEnd, Comment: e.Comment}
			if ss.name == spec.blockedSet() {
				put(&unblock, "u", g, elemOp{set: s, del: true, elem: del})
			} else {
				put(&dels, "d", g, elemOp{set: s, del: true, elem: del})
			}
		}
		group = ""
		for _, id := range slices.Sorted(maps.Keys(want)) {
			e := want[id]
			g := owner(&group, e)
			if kept(have, id, e) {
				continue
			}
			put(&adds, "a", g, elemOp{set: s, elem: e})
		}
	}
	return slices.Concat(dels, adds, unblock)
}

// startEndIntervals tells whether a set's elements are intervals written
// as a start and an IntervalEnd element (not Key to KeyEnd in one).
func startEndIntervals(sets ...map[string]nftables.SetElement) bool {
	for _, m := range sets {
		for _, e := range m {
			if e.IntervalEnd {
				return true
			}
		}
	}
	return false
}

// sameElements tells whether a and b hold the same elements.
func sameElements(a, b map[string]nftables.SetElement, same func(a, b nftables.SetElement) bool) bool {
	if len(a) != len(b) {
		return false
	}
	for id, e := range a {
		if o, ok := b[id]; !ok || !same(o, e) {
			return false
		}
	}
	return true
}

// flushElements sends the operations of groups in one batch: every set's
// deletions, then every set's additions, at most elemsPerMessage elements
// a message.
func flushElements(c *nftables.Conn, groups []opGroup) error {
	type key struct {
		set string
		del bool
	}
	bySet := map[key][]nftables.SetElement{}
	setOf := map[string]*nftables.Set{}
	var order []key
	for _, g := range groups {
		for _, op := range g.ops {
			k := key{op.set.Name, op.del}
			if _, ok := bySet[k]; !ok {
				order = append(order, k)
			}
			bySet[k] = append(bySet[k], op.elem)
			setOf[op.set.Name] = op.set
		}
	}
	slices.SortStableFunc(order, func(a, b key) int {
		switch {
		case a.del == b.del:
			return 0
		case a.del:
			return -1
		}
		return 1
	})
	for _, k := range order {
		elems := bySet[k]
		for len(elems) > 0 {
			n := min(len(elems), elemsPerMessage)
			var err error
			if k.del {
				err = c.SetDeleteElements(setOf[k.set], elems[:n])
			} else {
				err = c.SetAddElements(setOf[k.set], elems[:n])
			}
			if err != nil {
				return fmt.Errorf("set %s: %w", k.set, err)
			}
			elems = elems[n:]
		}
	}
	return c.Flush()
}

// holdClosed puts into the blocked set the marks of the translations whose
// deletions among groups did not happen (see convergeTable), and records
// in res which are held closed and which are not.
func (f *Fabric) holdClosed(c *nftables.Conn, r *nsRef, cur *tableState, spec tableSpec, groups []opGroup, res *convergeResult) {
	if res.failed == nil {
		res.failed = map[string]error{}
	}
	marks := map[string][]byte{} // by translation
	if mk := cur.sets[spec.markSet()]; mk != nil {
		for _, g := range groups {
			if !g.del || g.name == "" {
				continue
			}
			for _, e := range mk.elems {
				if e.Comment == g.name && len(e.Val) == 4 {
					marks[g.name] = e.Val
				}
			}
		}
	}
	if len(marks) == 0 {
		return
	}
	names := slices.Sorted(maps.Keys(marks))
	blocked := cur.sets[spec.blockedSet()]
	err := f.injected(FaultBlock, r.name)
	if err == nil && blocked == nil {
		err = fmt.Errorf("no set %s", spec.blockedSet())
	}
	if err == nil {
		var elems []nftables.SetElement
		for _, name := range names {
			elems = append(elems, nftables.SetElement{Key: marks[name], Comment: name})
		}
		err = flushElements(c, []opGroup{{ops: func() []elemOp {
			ops := make([]elemOp, len(elems))
			for i, e := range elems {
				ops[i] = elemOp{set: blocked.set, elem: e}
			}
			return ops
		}()}})
	}
	if err != nil {
		err = fmt.Errorf("namespace %s: hold %d withdrawn translations closed (set %s): %w", r.name, len(names), spec.blockedSet(), err)
		res.err = errors.Join(res.err, err)
		for _, name := range names {
			res.failed[name] = errors.Join(res.failed[name], err)
		}
		f.log.Error("a withdrawal failed and its paths could not be held closed: new connections may still be translated; retrying",
			"ns", r.name, "translations", names, "err", res.err)
		return
	}
	res.changed = true
	res.held = names
	for _, name := range names {
		if !slices.ContainsFunc(spec.sets, func(ss setSpec) bool {
			return ss.name == spec.dnatSet() && slices.ContainsFunc(ss.elems, func(e nftables.SetElement) bool { return e.Comment == name })
		}) {
			delete(res.failed, name) // withdrawn, and closed
		}
	}
	f.log.Warn("a withdrawal failed: its paths are held closed until it succeeds; retrying",
		"ns", r.name, "translations", names, "err", res.err)
}
