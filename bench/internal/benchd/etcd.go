package benchd

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// EtcdRequests returns how many requests of each gRPC method ("Range",
// "Txn", "Put", ...) of etcd's KV service the etcd server at endpoint has
// handled so far, from its Prometheus /metrics. The difference of two
// calls is what a measurement cost the store.
func EtcdRequests(ctx context.Context, endpoint string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("benchd: etcd metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("benchd: etcd metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("benchd: etcd metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "grpc_server_handled_total{") || !strings.Contains(line, `grpc_service="etcdserverpb.KV"`) {
			continue
		}
		_, rest, _ := strings.Cut(line, `grpc_method="`)
		method, _, _ := strings.Cut(rest, `"`)
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return nil, fmt.Errorf("benchd: etcd metrics: %q: %w", line, err)
		}
		out[method] += v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("benchd: etcd metrics: %w", err)
	}
	return out, nil
}
