package controller

// converged remembers, by key (a router), the fingerprint of what it last
// converged to, so that a pass hands the kernel only what changed: a
// router whose desired state has the fingerprint it converged to is left
// alone until the loop's resync forgets the fingerprints, which heals
// drift (a router rebuilt, a ruleset changed by hand). Only a loop's
// goroutine uses one.
type converged map[string]string

// current reports whether key converged to fp and has not been forgotten
// since.
func (c converged) current(key, fp string) bool {
	cur, ok := c[key]
	return ok && cur == fp
}

// done records that key converged to fp.
func (c converged) done(key, fp string) { c[key] = fp }

// forget makes key converge on its next pass.
func (c converged) forget(key string) { delete(c, key) }

// forgetAll makes every key converge on its next pass (a resync).
func (c converged) forgetAll() { clear(c) }

// keep forgets the keys that want does not hold (routers that went).
func (c converged) keep(want func(key string) bool) {
	for key := range c {
		if !want(key) {
			delete(c, key)
		}
	}
}
