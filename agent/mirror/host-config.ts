// Snippets that point Docker, containerd and podman at this node's mirror.
export type MirrorClientKind = 'containerd' | 'docker' | 'podman'
export const MIRROR_CLIENT_KINDS: MirrorClientKind[] = ['containerd', 'docker', 'podman']

/**
 * The configuration snippet for `kind`, for a mirror at `url`
 * (`http://127.0.0.1:5050`) whose default upstream is `upstream`.
 */
export function mirrorConfigSnippet (kind: MirrorClientKind, url: string, upstream = 'docker.io'): string {
  const host = new URL(url).host
  const registry = upstream === 'registry-1.docker.io' || upstream === 'index.docker.io' ? 'docker.io' : upstream
  const server = registry === 'docker.io' ? 'https://registry-1.docker.io' : `https://${registry}`
  switch (kind) {
    case 'containerd':
      return [
        `# /etc/containerd/certs.d/${registry}/hosts.toml`,
        '# (containerd 1.5+, with config_path = "/etc/containerd/certs.d" under',
        '#  [plugins."io.containerd.grpc.v1.cri".registry]; one such file per registry,',
        '#  or _default/hosts.toml for all of them: the mirror reads containerd\'s ns= parameter)',
        `server = "${server}"`,
        '',
        `[host."${url}"]`,
        '  capabilities = ["pull", "resolve"]',
        '  skip_verify = true',
        ''
      ].join('\n')
    case 'docker':
      return [
        '# /etc/docker/daemon.json (Docker uses registry-mirrors for Docker Hub only), then: systemctl restart docker',
        JSON.stringify({ 'registry-mirrors': [url] }, null, 2),
        ''
      ].join('\n')
    case 'podman':
      return [
        '# /etc/containers/registries.conf.d/bolt-mirror.conf',
        '[[registry]]',
        `prefix = "${registry}"`,
        `location = "${registry === 'docker.io' ? 'registry-1.docker.io' : registry}"`,
        '',
        '[[registry.mirror]]',
        `location = "${host}"`,
        'insecure = true',
        ''
      ].join('\n')
  }
}
