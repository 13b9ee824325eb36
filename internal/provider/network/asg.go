package network

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Application security groups: names for sets of NIC ipConfigurations that
// security rules can use as sources and destinations. Membership is stored
// on the members (NIC ipConfigurations); the ASG itself has only read-only
// properties.

func (p *Provider) putASG(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armnetwork.ApplicationSecurityGroup
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := validateEnvelope("application security group", r.ID, in.Location, in.Tags); err != nil {
		return nil, err
	}
	var (
		body    armnetwork.ApplicationSecurityGroup
		op      *arm.Operation
		created bool
	)
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		var cur armnetwork.ApplicationSecurityGroup
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(cur.Etag)); err != nil {
			return err
		}
		created = !exists
		if err := checkLocation(r.ID, str(cur.Location), *in.Location); err != nil {
			return err
		}
		var guid *string
		if cur.Properties != nil {
			guid = cur.Properties.ResourceGUID
		}
		id, name, guid, err := identity(tx, r, exists, str(cur.ID), str(cur.Name), guid)
		if err != nil {
			return err
		}
		state, done := p.settle(r.ID, false)
		body = armnetwork.ApplicationSecurityGroup{
			ID: ptr(id.String()), Name: ptr(name), Type: ptr(typeASG), Location: ptr(normLocation(*in.Location)),
			Tags: in.Tags, Etag: ptr(arm.NewETag()),
			Properties: &armnetwork.ApplicationSecurityGroupPropertiesFormat{ProvisioningState: ptr(state), ResourceGUID: guid},
		}
		if err := arm.Save(tx, r.ID, &body); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, str(body.Location), done)
		return err
	})
	if err != nil {
		return nil, err
	}
	return accepted(created, body, op), nil
}

func errASGInUse(id string, users []string) error {
	pid, _ := arm.ParseID(id)
	return errInUse(codeASGInUse, "Application security group", pid, users,
		"Remove it from those network interface ipConfigurations and security rules first.")
}

// asgGroupDelete refuses to delete an ASG with its resource group while an
// ipConfiguration or security rule of another group references it.
func (p *Provider) asgGroupDelete(tx store.Tx, id arm.ResourceID) error {
	users, err := p.newUsage(tx, id.Subscription).asgUsers(id.String())
	if err != nil {
		return err
	}
	if foreign := outside(users, id.ResourceGroup); len(foreign) > 0 {
		return errASGInUse(id.String(), foreign)
	}
	return nil
}
