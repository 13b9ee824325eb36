package daemon_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/daemon/daemontest"
	"github.com/privlink/privlink/internal/identity"
)

// The linked-authorization sweep. For every resource type the API serves
// with a PUT, it finds every reference the official SDK's model of the
// body can hold (by reflection: every nested object with an "id", every
// string property named "...Id"), plants in it the ID of a resource of
// another resource group on which the caller has no role, and sends the
// write as a principal who is Contributor on its own group only:
//
//   - a reference the type declares (arm.ResourceType.Links, LinkRequired)
//     must be refused with 403 LinkedAuthorizationFailed naming the linked
//     action and scope; the same write by an Owner of both groups must not
//     be;
//   - an approval link (LinkApproval) must never be refused, and a
//     connection it creates must not be Approved;
//   - any other reference must be refused (4xx) or not kept: the planted ID
//     must not appear in what a GET returns.
//
// So a reference a provider starts to accept without declaring it fails
// here, whatever its type.

func TestLinkedAuthorizationSweep(t *testing.T) {
	a := daemontest.New(t)
	e := newEnv(a)
	owner := a.Owner
	mine, theirs := e.rg("mine"), e.rg("theirs")
	limited := a.NewPrincipal(t, "limited", false)
	a.Assign(t, limited, identity.ContributorRoleID, mine)
	// The same set of resources in both groups.
	e.populate(t, mine)
	e.populate(t, theirs)

	// existing names, by the SDK model's struct type, the resource of that
	// type in a group.
	existing := map[string]func(g string) string{
		"Subnet":                   subnetIn,
		"SecurityGroup":            nsgIn,
		"RouteTable":               rtIn,
		"ApplicationSecurityGroup": asgIn,
		"VirtualNetwork":           vnetIn,
	}
	byType := map[string]func(g string) string{
		"microsoft.network/virtualnetworks/subnets":           subnetIn,
		"microsoft.network/networksecuritygroups":             nsgIn,
		"microsoft.network/routetables":                       rtIn,
		"microsoft.network/applicationsecuritygroups":         asgIn,
		"microsoft.network/virtualnetworks":                   vnetIn,
		"microsoft.network/privatednszones":                   zoneIn,
		"microsoft.network/loadbalancers/backendaddresspools": lbPoolIn,
		"microsoft.dbforpostgresql/flexibleservers":           e.server,
		"": e.server, // a private endpoint's target
	}
	// plant is the ID planted in a reference: a resource of their group.
	plant := func(ref reference, link *arm.Link) string {
		if link != nil {
			if f := byType[strings.ToLower(link.Type)]; f != nil {
				return f(theirs)
			}
			return theirs + "/providers/" + link.Type + "/planted"
		}
		if f := existing[ref.model]; f != nil {
			return f(theirs)
		}
		return theirs + netNS + "plantedTargets/planted-" + strings.ToLower(ref.model)
	}

	fixtures := e.fixtures()
	for _, typ := range a.Router.Types() {
		if typ.Put == nil {
			continue
		}
		f, ok := fixtures[typ.Type]
		if !ok {
			t.Errorf("%s has a PUT but no fixture in the linked-authorization sweep: add one (its SDK model, a valid body)", typ.Type)
			continue
		}
		t.Run(strings.ReplaceAll(typ.Type, "/", "_"), func(t *testing.T) {
			if f.sweepSkip != "" {
				t.Skip(f.sweepSkip)
			}
			if f.model == nil {
				return // a type the API only reads: no body
			}
			refs := references(reflect.TypeOf(f.model), f.inline)
			declared := map[string]arm.Link{}
			for _, l := range typ.Links {
				declared[l.Path] = l
				if !slices.ContainsFunc(refs, func(r reference) bool { return r.path == l.Path }) {
					t.Errorf("declared link %s is no property of the SDK's model %T", l.Path, f.model)
				}
			}
			t.Logf("%d references, %d declared: %v", len(refs), len(typ.Links), refs)
			if len(refs) == 0 {
				return
			}
			if f.body == nil {
				t.Fatalf("the model has references %v but the fixture no body to plant them in", refs)
			}
			if f.path == nil && f.instance != nil {
				// A type the fixture cannot create: its PUTs go to an
				// existing one (a connection: only its owner's decision).
				at := f.instance(t, e, mine)
				f.path = func(string, int) string { return at }
			}
			// The body as it is works for the caller: refusals below are
			// the references'.
			n := e.next()
			if r := a.Do(t, limited, http.MethodPut, f.path(mine, n)+apiVersion(f.path(mine, n)), f.body(mine, n)); r.Status >= 300 {
				t.Fatalf("the fixture's own body is refused: %d %s", r.Status, r.Body)
			}
			for _, ref := range refs {
				link, isLink := declared[ref.path]
				var lp *arm.Link
				if isLink {
					lp = &link
				}
				planted := plant(ref, lp)
				n := e.next()
				path, body := f.path(mine, n), f.body(mine, n)
				setPath(body, ref.path, planted)
				r := a.Do(t, limited, http.MethodPut, path+apiVersion(path), body)
				switch {
				case isLink && link.Kind == arm.LinkRequired:
					id, _ := arm.ParseID(planted)
					if r.Status != http.StatusForbidden || r.ErrorCode() != "LinkedAuthorizationFailed" ||
						!strings.Contains(string(r.Body), link.ActionOn(id)) || !strings.Contains(strings.ToLower(string(r.Body)), strings.ToLower(planted)) {
						t.Errorf("%s = %s: %d %s, want 403 LinkedAuthorizationFailed naming %s", ref.path, planted, r.Status, r.Body, link.ActionOn(id))
					}
					n := e.next()
					path, body = f.path(mine, n), f.body(mine, n)
					setPath(body, ref.path, planted)
					if r := a.Do(t, owner, http.MethodPut, path+apiVersion(path), body); r.ErrorCode() == "LinkedAuthorizationFailed" {
						t.Errorf("%s: an Owner of both groups is refused too: %s", ref.path, r.Body)
					}
				case isLink && link.Kind == arm.LinkApproval:
					if r.ErrorCode() == "LinkedAuthorizationFailed" {
						t.Errorf("%s: an approval link is refused: %s", ref.path, r.Body)
					}
					if r.Status < 300 {
						got := a.Do(t, limited, http.MethodGet, path+apiVersion(path), nil)
						if strings.Contains(string(got.Body), `"status":"Approved"`) {
							t.Errorf("%s: a connection to a resource the caller may not approve is Approved: %s", ref.path, got.Body)
						}
					}
				default:
					if r.Status < 300 {
						got := a.Do(t, owner, http.MethodGet, path+apiVersion(path), nil)
						if strings.Contains(strings.ToLower(string(got.Body)), strings.ToLower(planted)) {
							t.Errorf("%s: a reference the type does not declare (no linked check) was kept: %s", ref.path, got.Body)
						}
					}
				}
			}
		})
	}
}

// reference is a place in a body that can hold a resource ID.
type reference struct {
	path  string // as arm.Link.Path
	model string // the SDK struct it is the id of ("" for a string property)
}

func (r reference) String() string { return r.path }

// notReferences are string properties named ...Id that hold no resource ID.
var notReferences = []string{"tenantId", "principalId", "objectId", "subscriptionId", "clientId", "applicationId", "resourceGuid", "requestId", "internalId"}

// references lists the references of the SDK model t: the ".id" of each
// nested object that has one (but for the arrays of inline children
// named in inline, which are walked into) and each string property whose
// name ends in "Id". The SDK's models carry no JSON tags (their
// MarshalJSON names the properties), so t is filled in by reflection,
// marshalled by the SDK, and the JSON walked.
func references(t reflect.Type, inline []string) []reference {
	v := reflect.New(t)
	fill(v.Elem(), nil)
	b, err := json.Marshal(v.Interface())
	if err != nil {
		panic(fmt.Sprintf("marshal %v: %v", t, err))
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		panic(err)
	}
	var out []reference
	var walk func(obj map[string]any, at string)
	walk = func(obj map[string]any, at string) {
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			path := k
			if at != "" {
				path = at + "." + k
			}
			val := obj[k]
			if arr, ok := val.([]any); ok && len(arr) > 0 {
				val, path = arr[0], path+"[]"
			}
			switch val := val.(type) {
			case string:
				if strings.HasSuffix(k, "Id") && val == stringMarker && !slices.Contains(notReferences, k) {
					out = append(out, reference{path: path})
				}
			case map[string]any:
				if id, ok := val["id"].(string); ok && !slices.Contains(inline, path) {
					out = append(out, reference{path: path + ".id", model: strings.TrimPrefix(id, idMarker)})
					continue
				}
				walk(val, path)
			}
		}
	}
	walk(doc, "")
	return out
}

const (
	stringMarker = "planted-string"
	idMarker     = "planted-id-of-"
)

// fill sets every field of v: an ID field to idMarker and its struct's
// name, other strings to stringMarker, numbers to 1, each slice to one
// element; pointers are followed once per type on the way down.
func fill(v reflect.Value, seen []reflect.Type) {
	switch v.Kind() {
	case reflect.Pointer:
		if slices.Contains(seen, v.Type().Elem()) || len(seen) > 14 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), append(seen, v.Type().Elem()))
	case reflect.Struct:
		if v.Type().PkgPath() == "time" {
			return
		}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			fv := v.Field(i)
			if f.Name == "ID" && f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.String {
				fv.Set(reflect.New(f.Type.Elem()))
				fv.Elem().SetString(idMarker + v.Type().Name())
				continue
			}
			fill(fv, seen)
		}
	case reflect.String:
		v.SetString(stringMarker)
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	case reflect.Slice:
		el := reflect.New(v.Type().Elem()).Elem()
		fill(el, seen)
		v.Set(reflect.Append(reflect.MakeSlice(v.Type(), 0, 1), el))
	}
}

// setPath sets the reference at path in body to id, creating what is
// missing (an array gets one element, or keeps its first).
func setPath(body map[string]any, path, id string) {
	segs := strings.Split(path, ".")
	cur := body
	for i, s := range segs {
		last := i == len(segs)-1
		name, each := strings.CutSuffix(s, "[]")
		if last {
			cur[name] = id
			return
		}
		if !each {
			next, _ := cur[name].(map[string]any)
			if next == nil {
				next = map[string]any{}
				cur[name] = next
			}
			cur = next
			continue
		}
		arr, _ := cur[name].([]any)
		if len(arr) == 0 {
			arr = []any{map[string]any{}}
			cur[name] = arr
		}
		el, _ := arr[0].(map[string]any)
		if el == nil {
			el = map[string]any{}
			arr[0] = el
		}
		cur = el
	}
}
