{{/* The pod of a batch role (loop, train): the lake mounted, the role's command and resources. */}}
{{- define "recstack.batchPod" -}}
{{- $root := .root -}}
metadata:
  labels:
    {{- include "recstack.selector" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  restartPolicy: Never
  {{- include "recstack.pod" $root | nindent 2 }}
  containers:
    - name: {{ .component }}
      image: {{ include "recstack.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      {{- with .command }}
      command:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      args:
        {{- toYaml .args | nindent 8 }}
      {{- include "recstack.env" $root | nindent 6 }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - {name: home, mountPath: /var/lib/recstack}
        - {name: lake, mountPath: /var/lib/recstack-lake}
        - {name: tmp, mountPath: /tmp}
  volumes:
    - {name: home, emptyDir: {}}
    - name: lake
      persistentVolumeClaim:
        claimName: {{ include "recstack.lakeClaim" $root }}
    - {name: tmp, emptyDir: {}}
{{- end -}}
