build-me-asan/src/spec/spec.o: src/spec/spec.c src/core/banned.h \
 src/spec/spec.h src/compat/json.h src/compat/yaml.h src/core/strbuf.h \
 src/core/timeutil.h src/core/util.h
src/core/banned.h:
src/spec/spec.h:
src/compat/json.h:
src/compat/yaml.h:
src/core/strbuf.h:
src/core/timeutil.h:
src/core/util.h:
