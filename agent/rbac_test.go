package agent_test

import (
	"context"
	"github.com/policyd/policyd/deploy"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/policyd/policyd/internal/apiservertest"
)

var rbacOnce sync.Map // server URL -> *rest.Config

// agentRESTConfig installs the shipped deploy/policyd.yaml Namespace,
// ServiceAccount, ClusterRole and ClusterRoleBinding into s (once per server)
// and returns a config that authenticates only as that ServiceAccount, so the
// agents in these tests run with exactly the permissions shipped.
func agentRESTConfig(t *testing.T, s *apiservertest.Server) *rest.Config {
	t.Helper()
	if cfg, ok := rbacOnce.Load(s.URL()); ok {
		return rest.CopyConfig(cfg.(*rest.Config))
	}
	docs, err := deploy.Documents()
	require.NoError(t, err)
	ctx := context.Background()
	c := s.Client()
	// The agent's account is the one its DaemonSet runs as (the manifest
	// also has the metrics token's, which may do nothing).
	var saNS, saName string
	for _, d := range docs {
		if ds, ok := d.Object.(*appsv1.DaemonSet); ok {
			saNS, saName = ds.Namespace, ds.Spec.Template.Spec.ServiceAccountName
		}
	}
	for _, d := range docs {
		switch o := d.Object.(type) {
		case *corev1.Namespace:
			_, err = c.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ServiceAccount:
			_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = c.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		default:
			continue // the DaemonSet itself is not run here: the tests run the agent in-process
		}
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
		require.NoError(t, err)
	}
	require.NotEmpty(t, saName, "deploy/policyd.yaml has no DaemonSet with a ServiceAccount")
	cfg, err := s.ServiceAccountConfig(ctx, saNS, saName)
	require.NoError(t, err)
	rbacOnce.Store(s.URL(), cfg)
	return rest.CopyConfig(cfg)
}
