package network

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Network security groups. The stored document has no rules (they are
// child documents), no default rules (synthesized) and no subnets or
// networkInterfaces (derived from the subnets and NICs that reference it).

func (p *Provider) putNSG(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var raw struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	_ = json.Unmarshal(r.Body, &raw) // a malformed body is put's to answer
	_, hasRules := raw.Properties["securityRules"]
	guid := func(n *armnetwork.SecurityGroup) *string {
		if n.Properties == nil {
			return nil
		}
		return n.Properties.ResourceGUID
	}
	return p.nsgs().put(ctx, r, "network security group", guid,
		func(tx store.Tx, w putWrite[armnetwork.SecurityGroup]) (*armnetwork.SecurityGroup, error) {
			in := w.in.Properties
			if in == nil {
				in = &armnetwork.SecurityGroupPropertiesFormat{}
			}
			doc := &armnetwork.SecurityGroup{
				ID: ptr(w.id.String()), Name: ptr(w.name), Type: ptr(typeNSG), Location: ptr(w.loc), Tags: w.in.Tags, Etag: ptr(w.etag),
				Properties: &armnetwork.SecurityGroupPropertiesFormat{
					FlushConnection:   ptr(boolOr(in.FlushConnection, false)),
					ProvisioningState: ptr(w.state),
					ResourceGUID:      w.guid,
				},
			}
			if hasRules {
				rw := ruleWrite{nsgID: w.id, location: w.loc, state: w.state, etag: w.etag, u: newUsage(tx, w.id.Subscription)}
				if err := writeInlineRules(tx, rw, in.SecurityRules); err != nil {
					return nil, err
				}
			}
			return doc, nil
		})
}

// writeInlineRules replaces an NSG's rules with those of its PUT body. As
// for a VNet's subnets, a body without properties.securityRules keeps the
// rules; [] or null deletes them all.
func writeInlineRules(tx store.Tx, w ruleWrite, in []*armnetwork.SecurityRule) error {
	existing, err := loadRules(tx, w.nsgID)
	if err != nil {
		return err
	}
	byName := map[string]*armnetwork.SecurityRule{}
	for i := range existing {
		byName[strings.ToLower(str(existing[i].Name))] = &existing[i]
	}
	keep := map[string]bool{}
	var docs []*armnetwork.SecurityRule
	var entries []ruleEntry
	for i, rule := range in {
		w.path = arm.Field("properties.securityRules", i) + "."
		if rule == nil || str(rule.Name) == "" {
			return errMissing(w.path+"name", "A security rule's name")
		}
		k := strings.ToLower(*rule.Name)
		if keep[k] {
			return errInvalid(w.path+"name", "The security rule name '%s' appears twice in properties.securityRules; give each rule its own name.", *rule.Name)
		}
		keep[k] = true
		doc, err := buildRule(tx, w, *rule.Name, rule, byName[k])
		if err != nil {
			return err
		}
		docs = append(docs, doc)
		entries = append(entries, entryOf(doc, w.path))
	}
	if err := checkRuleConflicts(entries); err != nil {
		return err
	}
	for _, e := range existing {
		if !keep[strings.ToLower(str(e.Name))] {
			if err := arm.Delete(tx, w.nsgID.Child("securityRules", str(e.Name))); err != nil {
				return err
			}
		}
	}
	for _, d := range docs {
		if err := arm.Save(tx, w.nsgID.Child("securityRules", str(d.Name)), d); err != nil {
			return err
		}
	}
	return nil
}

// nsgView composes a stored NSG with its rules, default rules and the
// subnets and NICs associated with it.
func nsgView(r arm.Reader, n armnetwork.SecurityGroup, u *usage) (armnetwork.SecurityGroup, error) {
	if n.Properties == nil {
		n.Properties = &armnetwork.SecurityGroupPropertiesFormat{}
	}
	props := *n.Properties
	n.Properties = &props
	id, err := arm.ParseID(str(n.ID))
	if err != nil {
		return n, err
	}
	rules, err := loadRules(r, id)
	if err != nil {
		return n, err
	}
	props.SecurityRules = []*armnetwork.SecurityRule{}
	for i := range rules {
		props.SecurityRules = append(props.SecurityRules, &rules[i])
	}
	props.DefaultSecurityRules = defaultRules(str(n.ID), str(n.Etag))
	subnets, err := u.subnetsReferencing(str(n.ID), true)
	if err != nil {
		return n, err
	}
	props.Subnets = subnetRefs(subnets)
	nics, err := u.nicsWithNSG(str(n.ID))
	if err != nil {
		return n, err
	}
	props.NetworkInterfaces = nil
	for _, id := range nics {
		props.NetworkInterfaces = append(props.NetworkInterfaces, &armnetwork.Interface{ID: ptr(id)})
	}
	return n, nil
}

// nsgUsers lists the subnets and NICs associated with an NSG.
func nsgUsers(u *usage, id string) ([]string, error) {
	subnets, err := u.subnetsReferencing(id, true)
	if err != nil {
		return nil, err
	}
	nics, err := u.nicsWithNSG(id)
	if err != nil {
		return nil, err
	}
	return append(subnets, nics...), nil
}

func errNSGInUse(id string, users []string) error {
	pid, _ := arm.ParseID(id)
	return errInUse(codeNSGInUse, "Network security group", pid, users,
		"In order to delete the Network security group, remove the association with the resource(s).")
}

// nsgGroupDelete refuses to delete an NSG with its resource group while a
// subnet or NIC of another group is associated with it.
func (p *Provider) nsgGroupDelete(tx store.Tx, id arm.ResourceID) error {
	users, err := nsgUsers(p.newUsage(tx, id.Subscription), id.String())
	if err != nil {
		return err
	}
	if foreign := outside(users, id.ResourceGroup); len(foreign) > 0 {
		return errNSGInUse(id.String(), foreign)
	}
	return nil
}
