package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	azruntime "github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/azconfig"
)

// quickstartCmd builds, through the ARM API with the official SDK, a
// resource group, a network with a client NIC, a flexible server, a
// private endpoint with its DNS zone group and zone link, and prints the
// command that connects.
func quickstartCmd(ctx context.Context, cfg *azconfig.Config, dataDir string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	group := fs.String("g", "quickstart", "resource group")
	location := fs.String("location", "westeurope", "location")
	server := fs.String("server", "", "server name (default: qs- and a random suffix; names are global)")
	password := fs.String("password", "", "admin password (default: a random one, printed)")
	if err := fs.Parse(args); err != nil {
		return exitCode(2)
	}
	if *server == "" {
		*server = "qs-" + randomString(6, "abcdefghijklmnopqrstuvwxyz0123456789")
	}
	if *password == "" {
		*password = "Pl-" + randomString(20, "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")
	}
	sub := cfg.Creds.SubscriptionID
	o := cfg.ClientOptions()
	poll := &azruntime.PollUntilDoneOptions{Frequency: time.Second}
	step := func(format string, a ...any) func(error) error {
		start := time.Now()
		fmt.Fprintf(out, "• "+format+" ... ", a...)
		return func(err error) error {
			if err != nil {
				fmt.Fprintln(out, "failed")
				return err
			}
			fmt.Fprintf(out, "done (%s)\n", time.Since(start).Round(10*time.Millisecond))
			return nil
		}
	}
	id := func(kind, name string) string {
		return "/subscriptions/" + sub + "/resourceGroups/" + *group + "/providers/" + kind + "/" + name
	}
	vnetID := id("Microsoft.Network/virtualNetworks", "qs-vnet")

	rgs, err := armresources.NewResourceGroupsClient(sub, cfg.Credential, o)
	if err != nil {
		return err
	}
	nf, err := armnetwork.NewClientFactory(sub, cfg.Credential, o)
	if err != nil {
		return err
	}
	df, err := armprivatedns.NewClientFactory(sub, cfg.Credential, o)
	if err != nil {
		return err
	}
	pf, err := armpostgresqlflexibleservers.NewClientFactory(sub, cfg.Credential, o)
	if err != nil {
		return err
	}

	done := step("resource group %s", *group)
	_, err = rgs.CreateOrUpdate(ctx, *group, armresources.ResourceGroup{Location: location}, nil)
	if err := done(err); err != nil {
		return err
	}

	done = step("virtual network qs-vnet (10.0.0.0/16: clients 10.0.1.0/24, endpoints 10.0.2.0/24)")
	err = wait(ctx, poll, func() (*azruntime.Poller[armnetwork.VirtualNetworksClientCreateOrUpdateResponse], error) {
		return nf.NewVirtualNetworksClient().BeginCreateOrUpdate(ctx, *group, "qs-vnet", armnetwork.VirtualNetwork{Location: location,
			Properties: &armnetwork.VirtualNetworkPropertiesFormat{
				AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{ptr("10.0.0.0/16")}},
				Subnets: []*armnetwork.Subnet{
					{Name: ptr("clients"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr("10.0.1.0/24")}},
					{Name: ptr("endpoints"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr("10.0.2.0/24")}},
				}}}, nil)
	})
	if err := done(err); err != nil {
		return err
	}

	done = step("client NIC qs-client in subnet clients")
	err = wait(ctx, poll, func() (*azruntime.Poller[armnetwork.InterfacesClientCreateOrUpdateResponse], error) {
		return nf.NewInterfacesClient().BeginCreateOrUpdate(ctx, *group, "qs-client", armnetwork.Interface{Location: location,
			Properties: &armnetwork.InterfacePropertiesFormat{IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: ptr("ipconfig1"),
				Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: ptr(vnetID + "/subnets/clients")}}}}}}, nil)
	})
	if err := done(err); err != nil {
		return err
	}

	done = step("flexible server %s (PostgreSQL 15, admin pgadmin, public access disabled)", *server)
	err = wait(ctx, poll, func() (*azruntime.Poller[armpostgresqlflexibleservers.ServersClientCreateOrUpdateResponse], error) {
		return pf.NewServersClient().BeginCreateOrUpdate(ctx, *group, *server, armpostgresqlflexibleservers.Server{Location: location,
			SKU: &armpostgresqlflexibleservers.SKU{Name: ptr("Standard_B1ms"), Tier: ptr(armpostgresqlflexibleservers.SKUTierBurstable)},
			Properties: &armpostgresqlflexibleservers.ServerProperties{
				Version:                    ptr(armpostgresqlflexibleservers.PostgresMajorVersion("15")),
				AdministratorLogin:         ptr("pgadmin"),
				AdministratorLoginPassword: password,
				Storage:                    &armpostgresqlflexibleservers.Storage{StorageSizeGB: ptr[int32](32)},
				Network:                    &armpostgresqlflexibleservers.Network{PublicNetworkAccess: ptr(armpostgresqlflexibleservers.ServerPublicNetworkAccessStateDisabled)},
			}}, nil)
	})
	if err := done(err); err != nil {
		return err
	}

	zone := "privatelink.postgres.database.azure.com"
	done = step("private DNS zone %s linked to qs-vnet", zone)
	err = wait(ctx, poll, func() (*azruntime.Poller[armprivatedns.PrivateZonesClientCreateOrUpdateResponse], error) {
		return df.NewPrivateZonesClient().BeginCreateOrUpdate(ctx, *group, zone, armprivatedns.PrivateZone{Location: ptr("global")}, nil)
	})
	if err == nil {
		err = wait(ctx, poll, func() (*azruntime.Poller[armprivatedns.VirtualNetworkLinksClientCreateOrUpdateResponse], error) {
			return df.NewVirtualNetworkLinksClient().BeginCreateOrUpdate(ctx, *group, zone, "qs-vnet", armprivatedns.VirtualNetworkLink{Location: ptr("global"),
				Properties: &armprivatedns.VirtualNetworkLinkProperties{VirtualNetwork: &armprivatedns.SubResource{ID: &vnetID}}}, nil)
		})
	}
	if err := done(err); err != nil {
		return err
	}

	done = step("private endpoint qs-pe to %s in subnet endpoints, with its DNS zone group", *server)
	err = wait(ctx, poll, func() (*azruntime.Poller[armnetwork.PrivateEndpointsClientCreateOrUpdateResponse], error) {
		return nf.NewPrivateEndpointsClient().BeginCreateOrUpdate(ctx, *group, "qs-pe", armnetwork.PrivateEndpoint{Location: location,
			Properties: &armnetwork.PrivateEndpointProperties{
				Subnet: &armnetwork.Subnet{ID: ptr(vnetID + "/subnets/endpoints")},
				PrivateLinkServiceConnections: []*armnetwork.PrivateLinkServiceConnection{{Name: ptr("qs-pe"),
					Properties: &armnetwork.PrivateLinkServiceConnectionProperties{PrivateLinkServiceID: ptr(id("Microsoft.DBforPostgreSQL/flexibleServers", *server)),
						GroupIDs: []*string{ptr("postgresqlServer")}}}},
			}}, nil)
	})
	if err == nil {
		err = wait(ctx, poll, func() (*azruntime.Poller[armnetwork.PrivateDNSZoneGroupsClientCreateOrUpdateResponse], error) {
			return nf.NewPrivateDNSZoneGroupsClient().BeginCreateOrUpdate(ctx, *group, "qs-pe", "default", armnetwork.PrivateDNSZoneGroup{
				Properties: &armnetwork.PrivateDNSZoneGroupPropertiesFormat{PrivateDNSZoneConfigs: []*armnetwork.PrivateDNSZoneConfig{{Name: ptr("postgres"),
					Properties: &armnetwork.PrivateDNSZonePropertiesFormat{PrivateDNSZoneID: ptr(id("Microsoft.Network/privateDnsZones", zone))}}}}}, nil)
		})
	}
	if err := done(err); err != nil {
		return err
	}

	fmt.Fprintf(out, "\nReady. The server is reachable only through the endpoint, from inside qs-vnet. Connect with:\n\n")
	fmt.Fprintf(out, "  PGPASSWORD='%s' privlink --data-dir %s exec -g %s qs-client -- \\\n    psql \"host=%s.postgres.database.azure.com user=pgadmin dbname=postgres sslmode=verify-full sslrootcert=%s\"\n\n",
		*password, dataDir, *group, *server, filepath.Join(dataDir, "ca.pem"))
	fmt.Fprintf(out, "The admin password is shown only now; privlink keeps only its SCRAM verifier.\n")
	return nil
}

// wait starts a long-running operation and polls it to the end.
func wait[T any](ctx context.Context, o *azruntime.PollUntilDoneOptions, begin func() (*azruntime.Poller[T], error)) error {
	p, err := begin()
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(ctx, o)
	return err
}

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }
