package network

import (
	"strings"

	"github.com/privlink/privlink/internal/arm"
)

// header is the part of a stored document that references need.
type header struct {
	ID       string `json:"id"`
	Location string `json:"location"`
}

// resolved is a referenced resource that exists.
type resolved struct {
	ID       arm.ResourceID // parsed from the stored ID: canonical casing
	Location string         // the resource's (for a child, its parent's) location
}

// String is the canonical ID.
func (r resolved) String() string { return r.ID.String() }

// resolve checks a {"id": ...} reference made by referrer at target (the
// JSON path of the id, e.g. "properties.subnet.id"): it must be the full ID
// of a resource of type want in the referrer's subscription, and that
// resource must exist. A child resource reports its top-level ancestor's
// location.
func resolve(r arm.Reader, referrer arm.ResourceID, target string, ref *string, want string) (resolved, error) {
	raw := strings.TrimSpace(str(ref))
	id, err := arm.ParseID(raw)
	if raw == "" || err != nil || id.Scope != nil || id.IsCollection() || len(id.Names) == 0 ||
		id.ResourceGroup == "" || !strings.EqualFold(id.Type(), want) {
		return resolved{}, errLinkedID(target, raw, want)
	}
	if !strings.EqualFold(id.Subscription, referrer.Subscription) {
		return resolved{}, badRequest(codeInvalidReference, target,
			"Resource %s referenced by resource %s is in another subscription; privlink resolves references within one subscription. Use a resource of subscription %s.",
			raw, referrer, referrer.Subscription)
	}
	var h header
	ok, err := arm.Load(r, id, &h)
	if err != nil {
		return resolved{}, err
	}
	if !ok {
		return resolved{}, errRefNotFound(target, raw, referrer)
	}
	canon, err := arm.ParseID(h.ID)
	if err != nil {
		canon = id
	}
	res := resolved{ID: canon, Location: h.Location}
	if len(id.Types) > 1 { // a child: the location is the top-level resource's
		top := canon
		top.Types, top.Names = top.Types[:1], top.Names[:1]
		var th header
		if _, err := arm.Load(r, top, &th); err != nil {
			return resolved{}, err
		}
		res.Location = th.Location
	}
	return res, nil
}

// resolveSameRegion is resolve plus Azure's rule that network resources
// reference only resources in their own region.
func resolveSameRegion(r arm.Reader, referrer arm.ResourceID, location, target string, ref *string, want string) (resolved, error) {
	res, err := resolve(r, referrer, target, ref, want)
	if err != nil {
		return res, err
	}
	if normLocation(res.Location) != normLocation(location) {
		return res, errRefLocation(target, res.String(), res.Location, referrer, location)
	}
	return res, nil
}
