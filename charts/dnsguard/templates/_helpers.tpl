{{/*
Chart name, trimmed so suffixed names still fit 63 characters.
*/}}
{{- define "dnsguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name. A release named like the chart gives just the chart
name, so `helm install dnsguard` yields MutatingWebhookConfiguration
"dnsguard". Trimmed to 52 so "-certs"/"-test"/"-ca-issuer" suffixes fit.
*/}}
{{- define "dnsguard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dnsguard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "dnsguard.labels" -}}
helm.sh/chart: {{ include "dnsguard.chart" . }}
app.kubernetes.io/name: {{ include "dnsguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dnsguard
{{- end }}

{{/*
Selector labels of the webhook pods. dnsguard.io/component is also what the
webhook's objectSelector excludes, so the webhook never mutates itself.
*/}}
{{- define "dnsguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dnsguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
dnsguard.io/component: webhook
{{- end }}

{{/*
Selector labels of the certificate controller pods (its Deployment's
selector: immutable, never change them).
*/}}
{{- define "dnsguard.certsSelectorLabels" -}}
app.kubernetes.io/name: {{ include "dnsguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
dnsguard.io/component: certs
{{- end }}

{{- define "dnsguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dnsguard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the TLS Secret (ca.crt, tls.crt, tls.key) in every certificates mode.
*/}}
{{- define "dnsguard.secretName" -}}
{{- default (printf "%s-tls" (include "dnsguard.fullname" .)) .Values.certificates.secretName }}
{{- end }}

{{- define "dnsguard.image" -}}
{{- include "dnsguard.imageRef" (dict "root" . "image" .Values.image) }}
{{- end }}

{{- define "dnsguard.sidecarImage" -}}
{{- include "dnsguard.imageRef" (dict "root" . "image" .Values.sidecar.image) }}
{{- end }}

{{/*
An image reference from (dict "root" $ "image" <repository/tag/digest>):
global.imageRegistry, when set, is put in front of the repository (a mirror
of the public images), and a digest replaces the tag: "repo@sha256:…" pins
the exact image whatever the tag now points to.
*/}}
{{- define "dnsguard.imageRef" -}}
{{- $repo := .image.repository }}
{{- with dig "imageRegistry" "" (.root.Values.global | default dict) }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repo .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/*
True (non-empty) when the webhook runs in the cluster, i.e. not URL mode.
*/}}
{{- define "dnsguard.inCluster" -}}
{{- if not .Values.webhookConfiguration.url }}true{{- end }}
{{- end }}

{{/*
Host of webhookConfiguration.url without port or IPv6 brackets, for the
certificate SANs.
*/}}
{{- define "dnsguard.urlHost" -}}
{{- with .Values.webhookConfiguration.url }}
{{- $host := (urlParse .).host }}
{{- if hasPrefix "[" $host }}
{{- regexReplaceAll "^\\[([^\\]]*)\\].*$" $host "${1}" }}
{{- else }}
{{- regexReplaceAll ":[0-9]+$" $host "" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Comma-separated extra SANs for `certs controller --hosts`.
*/}}
{{- define "dnsguard.extraHosts" -}}
{{- $hosts := .Values.certificates.extraHosts }}
{{- $u := include "dnsguard.urlHost" . }}
{{- if and $u (not (has $u $hosts)) }}
{{- $hosts = append $hosts $u }}
{{- end }}
{{- join "," $hosts }}
{{- end }}

{{/*
Namespaces the webhook must never see: kube-system, the release namespace
and any extras.
*/}}
{{- define "dnsguard.excludedNamespaces" -}}
{{- $ns := list "kube-system" .Release.Namespace }}
{{- range .Values.webhookConfiguration.excludeNamespaces }}
{{- if not (has . $ns) }}
{{- $ns = append $ns . }}
{{- end }}
{{- end }}
{{- toJson (uniq $ns) }}
{{- end }}

{{/*
Hardened container securityContext shared by every container of the chart.
*/}}
{{- define "dnsguard.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
{{- if not .Values.openshift }}
runAsUser: 65532
runAsGroup: 65532
{{- end }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- /* With openshift=true the UID, GID and fsGroup are left out: the
restricted SCC assigns them from the namespace's range and rejects pods that
ask for others. runAsNonRoot stays. */}}
{{- define "dnsguard.podSecurityContext" -}}
runAsNonRoot: true
{{- if not .Values.openshift }}
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The webhook configuration file (config.yaml in the ConfigMap).
*/}}
{{- define "dnsguard.config" -}}
listen: ":{{ .Values.containerPort }}"
metricsListen: ":{{ .Values.metrics.port }}"
{{- with .Values.requestBudgetBytes }}
requestBudgetBytes: {{ int64 . }}
{{- end }}
tlsCertFile: /etc/dnsguard/tls/tls.crt
tlsKeyFile: /etc/dnsguard/tls/tls.key
logLevel: {{ .Values.logLevel | quote }}
nameservers: {{ toJson .Values.nameservers }}
dnsService: {{ .Values.dnsService | quote }}
recheckInterval: {{ .Values.dnsRecheckInterval | quote }}
clusterDomain: {{ .Values.clusterDomain | quote }}
defaultMode: {{ .Values.defaultMode | quote }}
namespaceDefaults: {{ .Values.namespaceDefaults }}
nativeSidecars: {{ .Values.nativeSidecars | quote }}
dnsOptions:
{{- range .Values.dnsOptions }}
  - name: {{ .name | quote }}
    {{- if hasKey . "value" }}
    value: {{ .value | quote }}
    {{- end }}
{{- end }}
sidecar:
  image: {{ include "dnsguard.sidecarImage" . | quote }}
  {{- with .Values.sidecar.image.pullPolicy }}
  imagePullPolicy: {{ . }}
  {{- end }}
  fallback: {{ .Values.sidecar.fallback }}
  {{- /* 0: the webhook leaves the sidecar's UID/GID to the platform. */}}
  runAsUser: {{ if .Values.openshift }}0{{ else }}{{ .Values.sidecar.runAsUser | default 0 }}{{ end }}
  {{- with .Values.sidecar.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - {{ .name | quote }}
    {{- end }}
  {{- end }}
  {{- with .Values.sidecar.extraArgs }}
  extraArgs: {{ toJson . }}
  {{- end }}
  {{- /* Only when set: off, the config (and so every patch) is as before. */}}
  {{- with .Values.sidecar.metricsPort }}
  metricsPort: {{ int . }}
  {{- end }}
  resources:
    {{- toYaml .Values.sidecar.resources | nindent 4 }}
{{- with .Values.extraSearchDomains }}
extraSearchDomains: {{ toJson . }}
{{- end }}
{{- if and .Values.nodeCache.enabled .Values.nodeLocalDNSCache.enabled }}
{{- fail "nodeCache.enabled and nodeLocalDNSCache.enabled exclude each other: nodeCache deploys dnsguard's own node cache, nodeLocalDNSCache uses the one already installed" }}
{{- end }}
{{- if .Values.nodeCache.enabled }}
nodeLocal:
  enabled: true
  address: {{ include "dnsguard.nodeCacheAddresses" . | quote }}
{{- else if .Values.nodeLocalDNSCache.enabled }}
nodeLocal:
  enabled: true
  existing: true
  address: {{ .Values.nodeLocalDNSCache.address | quote }}
{{- end }}
{{- end }}

{{/*
Secret holding the CA certificate and private key (certificate controller
only; never mounted by the webhook).
*/}}
{{- define "dnsguard.caSecretName" -}}
{{- printf "%s-ca" (include "dnsguard.fullname" .) }}
{{- end }}

{{/*
True when the built-in certificate controller manages the certificates
(mode "controller").
*/}}
{{- define "dnsguard.certController" -}}
{{- if eq .Values.certificates.mode "controller" }}true{{- end }}
{{- end }}

{{/*
True when a ServiceMonitor scrapes the webhook replicas (not in URL mode:
there is no in-cluster webhook to scrape).
*/}}
{{- define "dnsguard.webhookScraped" -}}
{{- if and .Values.metrics.serviceMonitor.enabled (include "dnsguard.inCluster" .) }}true{{- end }}
{{- end }}

{{/*
True when a ServiceMonitor scrapes the certificate controller.
*/}}
{{- define "dnsguard.certsScraped" -}}
{{- if and .Values.metrics.serviceMonitor.enabled (include "dnsguard.certController" .) }}true{{- end }}
{{- end }}

{{/*
True when a PodMonitor scrapes resolvers (the node cache or the sidecars).
*/}}
{{- define "dnsguard.resolverScraped" -}}
{{- $pm := .Values.metrics.podMonitor }}
{{- if and $pm.enabled (or (and .Values.nodeCache.enabled .Values.nodeCache.metrics.enabled) (gt (int .Values.sidecar.metricsPort) 0)) }}true{{- end }}
{{- end }}

{{/*
Namespace of the node cache (its ServiceAccount and DaemonSet):
nodeCache.namespace, else the release namespace. The node cache needs the
"privileged" Pod Security level (hostNetwork, NET_ADMIN, UID 0); a namespace
of its own lets the release namespace stay "restricted".
*/}}
{{- define "dnsguard.nodeCacheNamespace" -}}
{{- .Values.nodeCache.namespace | default .Release.Namespace }}
{{- end }}

{{/* The node cache's addresses: nodeCache.address, and nodeCache.ipv6Address
when set, comma separated as the resolver's --node-local-address and the
webhook's nodeLocal.address take them. */}}
{{- define "dnsguard.nodeCacheAddresses" -}}
{{- .Values.nodeCache.address -}}
{{- with .Values.nodeCache.ipv6Address }},{{ . }}{{ end -}}
{{- end }}

{{/*
The webhook configuration's clientConfig, shared by its entries.
*/}}
{{- define "dnsguard.webhookClientConfig" -}}
{{- if .Values.webhookConfiguration.url }}
url: {{ .Values.webhookConfiguration.url | quote }}
{{- else }}
service:
  name: {{ include "dnsguard.fullname" . }}
  namespace: {{ .Release.Namespace }}
  path: /mutate
  port: {{ .Values.service.port }}
{{- end }}
{{- if eq .Values.certificates.mode "provided" }}
caBundle: {{ .Values.certificates.caBundle | b64enc }}
{{- end }}
{{- /* controller mode: the certificate controller writes caBundle. It
is left out here so Helm's three-way merge keeps the live value on
upgrade; if anything empties it all the same (kubectl apply of rendered
manifests), the controller's watch sees it and writes it back within
seconds. certManager mode: the cainjector fills it. */}}
{{- end }}
