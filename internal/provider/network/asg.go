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
	guid := func(a *armnetwork.ApplicationSecurityGroup) *string {
		if a.Properties == nil {
			return nil
		}
		return a.Properties.ResourceGUID
	}
	return p.asgs().put(ctx, r, "application security group", guid,
		func(_ store.Tx, w putWrite[armnetwork.ApplicationSecurityGroup]) (*armnetwork.ApplicationSecurityGroup, error) {
			return &armnetwork.ApplicationSecurityGroup{
				ID: ptr(w.id.String()), Name: ptr(w.name), Type: ptr(typeASG), Location: ptr(w.loc), Tags: w.in.Tags, Etag: ptr(w.etag),
				Properties: &armnetwork.ApplicationSecurityGroupPropertiesFormat{ProvisioningState: ptr(w.state), ResourceGUID: w.guid},
			}, nil
		})
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
