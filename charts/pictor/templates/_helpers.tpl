{{- define "pictor.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pictor.selectorLabels" -}}
app.kubernetes.io/name: pictor-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pictor.labels" -}}
{{ include "pictor.selectorLabels" . }}
app.kubernetes.io/part-of: pictor
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "pictor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pictor.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "pictor.billing.fullname" -}}
{{- printf "%s-billing" (include "pictor.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{- define "pictor.billing.selectorLabels" -}}
app.kubernetes.io/name: pictor-billing
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pictor.billing.labels" -}}
{{ include "pictor.billing.selectorLabels" . }}
app.kubernetes.io/part-of: pictor
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "pictor.billing.serviceAccountName" -}}
{{- if .Values.billing.serviceAccount.create -}}
{{- default (include "pictor.billing.fullname" .) .Values.billing.serviceAccount.name -}}
{{- else -}}
{{- required "billing.serviceAccount.name is required when billing.serviceAccount.create is false" .Values.billing.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "pictor.billing.aptosNodeUrl" -}}
{{- required "billing.aptosNodeUrl is required when billing.enabled is true: set the REST root of an Aptos node, e.g. --set billing.aptosNodeUrl=https://fullnode.testnet.aptoslabs.com/v1 (or billing.enabled=false to run no billing controller)" .Values.billing.aptosNodeUrl -}}
{{- end -}}
