package network

import (
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
)

// Application security groups span one virtual network. Azure's rules
// (learn.microsoft.com/azure/virtual-network/application-security-groups,
// "Allow-Database-BusinessLogic" section): "All network interfaces assigned
// to an application security group have to exist in the same virtual
// network that the first network interface assigned to the application
// security group is in", and "If you specify an application security group
// as the source and destination in a security rule, the network interfaces
// in both application security groups must exist in the same virtual
// network". Azure checks them when members join (a NIC ipConfiguration or a
// private endpoint naming the group) and when a rule pairs two groups whose
// members are already placed; so does privlink.

// joinASGs resolves the application security groups a member (a NIC or a
// private endpoint, given by its ID) names at path, in subnet, and applies
// the one-network rules to the member's new place.
func joinASGs(r arm.Reader, u *usage, member arm.ResourceID, location, path string, refs []*armnetwork.ApplicationSecurityGroup, subnet arm.ResourceID) ([]*armnetwork.ApplicationSecurityGroup, error) {
	vnet := subnet.Parent().String()
	return resolveASGs(r, member, location, path, refs, func(asg, target string) error {
		return checkASGPlace(u, member.String(), asg, vnet, target)
	})
}

// resolveASGs resolves the application security group references at path
// (each must exist, in location) to their canonical IDs, and applies check
// (if not nil) to each, given its ID and JSON path.
func resolveASGs(r arm.Reader, referrer arm.ResourceID, location, path string, refs []*armnetwork.ApplicationSecurityGroup, check func(asg, target string) error) ([]*armnetwork.ApplicationSecurityGroup, error) {
	var out []*armnetwork.ApplicationSecurityGroup
	for i, a := range refs {
		t := arm.Field(path, i) + ".id"
		if a == nil {
			return nil, errMissing(t, "An application security group reference")
		}
		asg, err := resolveSameRegion(r, referrer, location, t, a.ID, typeASG)
		if err != nil {
			return nil, err
		}
		if check != nil {
			if err := check(asg.String(), t); err != nil {
				return nil, err
			}
		}
		out = append(out, &armnetwork.ApplicationSecurityGroup{ID: ptr(asg.String())})
	}
	return out, nil
}

// checkASGPlace refuses a member of asg in vnet when the group's other
// members, or those of a group a security rule pairs it with, are in
// another virtual network. skip is the joining member's own ID.
func checkASGPlace(u *usage, skip, asg, vnet, target string) error {
	if m, ok, err := u.asgMember(asg, skip); err != nil {
		return err
	} else if ok && !strings.EqualFold(m.vnet(), vnet) {
		return badRequest(codeASGNetwork, target,
			"Application security group %s has members in virtual network %s (%s); %s is in %s. All network interfaces of an application security group must be in the virtual network of its first member.",
			asg, m.vnet(), m.user(), skip, vnet)
	}
	rules, err := u.Rules()
	if err != nil {
		return err
	}
	k := lkey(asg)
	for _, rule := range rules {
		if rule.Properties == nil {
			continue
		}
		src, dst := asgIDs(rule.Properties.SourceApplicationSecurityGroups), asgIDs(rule.Properties.DestinationApplicationSecurityGroups)
		others := dst
		if !refsContain(src, k) {
			if !refsContain(dst, k) {
				continue
			}
			others = src
		}
		for _, o := range others {
			m, ok, err := u.asgMember(o, skip)
			if err != nil {
				return err
			}
			if ok && !strings.EqualFold(m.vnet(), vnet) {
				return badRequest(codeASGNetwork, target,
					"Security rule %s pairs application security groups %s and %s as source and destination; the members of %s are in virtual network %s, and %s would put one of %s in %s. The network interfaces of both groups must be in the same virtual network.",
					str(rule.ID), asg, o, o, m.vnet(), skip, asg, vnet)
			}
		}
	}
	return nil
}

// checkRuleASGs refuses a rule whose source and destination application
// security groups have members in different virtual networks.
func checkRuleASGs(u *usage, rule arm.ResourceID, pp string, src, dst []*armnetwork.ApplicationSecurityGroup) error {
	if len(src) == 0 || len(dst) == 0 {
		return nil
	}
	var (
		first    ipConfigRef
		firstASG string
	)
	for side, groups := range [][]*armnetwork.ApplicationSecurityGroup{src, dst} {
		field := pp + []string{"source", "destination"}[side] + "ApplicationSecurityGroups"
		for i, a := range groups {
			id := str(a.ID)
			m, ok, err := u.asgMember(id, "")
			switch {
			case err != nil:
				return err
			case !ok:
			case firstASG == "":
				first, firstASG = m, id
			case !strings.EqualFold(first.vnet(), m.vnet()):
				return badRequest(codeASGNetwork, arm.Field(field, i)+".id",
					"Security rule %s uses application security groups whose members are in different virtual networks: %s is in %s, %s in %s. The network interfaces of a rule's source and destination application security groups must be in the same virtual network.",
					rule, firstASG, first.vnet(), id, m.vnet())
			}
		}
	}
	return nil
}

// asgMember returns one ipConfiguration that is a member of asg and does
// not belong to skip (a NIC or private endpoint ID; "" skips nothing).
func (u *usage) asgMember(asg, skip string) (ipConfigRef, bool, error) {
	nics, err := u.NICSummaries()
	if err != nil {
		return ipConfigRef{}, false, err
	}
	k, s := lkey(asg), lkey(skip)
	for _, n := range nics {
		for _, ref := range n.configs {
			if s != "" && (lkey(ref.NIC) == s || lkey(ref.PrivateEndpoint) == s) {
				continue
			}
			if refsContain(ref.ASGs, k) {
				return ref, true, nil
			}
		}
	}
	return ipConfigRef{}, false, nil
}

// vnet is the ID of the virtual network of the ipConfiguration's subnet.
func (r ipConfigRef) vnet() string {
	if i := strings.LastIndex(strings.ToLower(r.Subnet), "/subnets/"); i >= 0 {
		return r.Subnet[:i]
	}
	return r.Subnet
}
