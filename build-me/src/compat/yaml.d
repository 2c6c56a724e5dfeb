build-me/src/compat/yaml.o: src/compat/yaml.c src/core/banned.h \
 src/compat/yaml.h src/core/util.h
src/core/banned.h:
src/compat/yaml.h:
src/core/util.h:
