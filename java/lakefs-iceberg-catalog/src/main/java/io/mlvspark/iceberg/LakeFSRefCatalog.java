package io.mlvspark.iceberg;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.hadoop.conf.Configurable;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.iceberg.BaseMetastoreCatalog;
import org.apache.iceberg.CatalogUtil;
import org.apache.iceberg.PartitionSpec;
import org.apache.iceberg.Schema;
import org.apache.iceberg.SortOrder;
import org.apache.iceberg.Table;
import org.apache.iceberg.TableMetadata;
import org.apache.iceberg.Transaction;
import org.apache.iceberg.catalog.Namespace;
import org.apache.iceberg.catalog.SupportsNamespaces;
import org.apache.iceberg.catalog.TableIdentifier;
import org.apache.iceberg.exceptions.AlreadyExistsException;
import org.apache.iceberg.exceptions.NamespaceNotEmptyException;
import org.apache.iceberg.exceptions.NoSuchNamespaceException;
import org.apache.iceberg.exceptions.NoSuchTableException;
import org.apache.iceberg.exceptions.RuntimeIOException;

/**
 * Iceberg catalog for tables stored in lakeFS, where a ref (branch, tag or commit) is a path
 * prefix {@code s3a://<repo>/<ref>/} through lakeFS's S3 gateway.
 *
 * <p>Identifiers are {@code <ref>.<ns1>[.<ns2>…].<table>}: level 0 of the Iceberg namespace is the
 * lakeFS ref, the remaining levels (at least one) are the table's namespace. A table lives at
 * {@code <root(ref)>/<prefix/><ns1>/…/<table>}, where {@code root(ref)} comes from {@code
 * lakefs.root-uri-template}.
 *
 * <p>Every location Iceberg records (table location, metadata files, manifest lists, manifests,
 * data and delete files) is ref-relative ({@code <prefix/>ns1/…/table/…}); {@link LakeFSRefFileIO}
 * resolves it against the ref the table is read from. The current metadata file is named by the
 * pointer object {@code <table>/metadata/version-hint.text} (see {@link LakeFSRefTableOperations}).
 *
 * <p>Catalog properties (Spark: {@code spark.sql.catalog.<name>.<property>}):
 *
 * <ul>
 *   <li>{@code lakefs.repository}: lakeFS repository (required when the template uses {@code
 *       {repo}})
 *   <li>{@code lakefs.root-uri-template}: default {@code s3a://{repo}/{ref}}
 *   <li>{@code lakefs.prefix}: optional path prefix inside the ref, default empty
 * </ul>
 */
public class LakeFSRefCatalog extends BaseMetastoreCatalog
    implements SupportsNamespaces, Configurable {

  public static final String REPOSITORY = "lakefs.repository";
  public static final String ROOT_URI_TEMPLATE = "lakefs.root-uri-template";
  public static final String PREFIX = "lakefs.prefix";
  public static final String DEFAULT_ROOT_URI_TEMPLATE = "s3a://{repo}/{ref}";

  /** Object that makes an (otherwise empty) namespace visible; holds its properties. */
  public static final String NAMESPACE_MARKER = ".iceberg-namespace.properties";

  private static final String REPO_VAR = "{repo}";
  private static final String REF_VAR = "{ref}";
  private static final int MAX_NAMESPACE_SCAN_DEPTH = 8;

  private String catalogName = "lakefs";
  private Map<String, String> catalogProperties = Collections.emptyMap();
  private Configuration conf;
  private String repository;
  private String rootTemplate;
  private String prefix;
  private final Map<String, LakeFSRefFileIO> fileIOs = new ConcurrentHashMap<>();

  public LakeFSRefCatalog() {}

  @Override
  public void initialize(String name, Map<String, String> properties) {
    this.catalogName = name;
    this.catalogProperties = Collections.unmodifiableMap(new HashMap<>(properties));
    this.rootTemplate = properties.getOrDefault(ROOT_URI_TEMPLATE, DEFAULT_ROOT_URI_TEMPLATE).trim();
    this.repository = properties.get(REPOSITORY);
    this.prefix = normalizePrefix(properties.getOrDefault(PREFIX, ""));

    if (!rootTemplate.contains(REF_VAR)) {
      throw new IllegalArgumentException(
          String.format(
              "Catalog %s: %s=%s must contain %s (the lakeFS ref is part of every path)",
              name, ROOT_URI_TEMPLATE, rootTemplate, REF_VAR));
    }
    if (rootTemplate.contains(REPO_VAR)) {
      if (repository == null || repository.trim().isEmpty()) {
        throw new IllegalArgumentException(
            String.format(
                "Catalog %s: %s is required (root URI template %s uses %s)",
                name, REPOSITORY, rootTemplate, REPO_VAR));
      }
      this.repository = repository.trim();
      checkSegment(repository, "lakeFS repository");
    }
    if (!LakeFSRefFileIO.isAbsolute(rootTemplate.replace(REPO_VAR, "r").replace(REF_VAR, "b"))) {
      throw new IllegalArgumentException(
          String.format(
              "Catalog %s: %s=%s must be an absolute URI such as s3a://{repo}/{ref}",
              name, ROOT_URI_TEMPLATE, rootTemplate));
    }
    if (conf == null) {
      conf = new Configuration();
    }
  }

  @Override
  public String name() {
    return catalogName;
  }

  @Override
  protected Map<String, String> properties() {
    return catalogProperties;
  }

  @Override
  public void setConf(Configuration configuration) {
    this.conf = configuration;
  }

  @Override
  public Configuration getConf() {
    return conf;
  }

  // ---------------------------------------------------------------------------------------------
  // refs, paths and identifiers

  /** Absolute URI of the root of {@code ref}, e.g. {@code s3a://repo/main}. */
  public String refRoot(String ref) {
    checkSegment(ref, "lakeFS ref");
    String root = rootTemplate.replace(REF_VAR, ref);
    if (repository != null) {
      root = root.replace(REPO_VAR, repository);
    }
    while (root.endsWith("/") && !root.endsWith("://")) {
      root = root.substring(0, root.length() - 1);
    }
    return root;
  }

  /** The FileIO for one ref (cached: one per ref). */
  public LakeFSRefFileIO fileIO(String ref) {
    return fileIOs.computeIfAbsent(
        ref,
        r -> {
          Map<String, String> props = new HashMap<>(catalogProperties);
          props.put(LakeFSRefFileIO.REF_ROOT_PROPERTY, refRoot(r));
          LakeFSRefFileIO io = new LakeFSRefFileIO(refRoot(r), conf);
          io.initialize(props);
          return io;
        });
  }

  private static String normalizePrefix(String p) {
    String s = p == null ? "" : p.trim();
    while (s.startsWith("/")) {
      s = s.substring(1);
    }
    while (s.endsWith("/")) {
      s = s.substring(0, s.length() - 1);
    }
    for (String part : s.isEmpty() ? new String[0] : s.split("/")) {
      if (part.isEmpty() || part.equals(".") || part.equals("..")) {
        throw new IllegalArgumentException(String.format("Invalid %s: '%s'", PREFIX, p));
      }
    }
    return s;
  }

  private static void checkSegment(String s, String what) {
    if (s == null || s.isEmpty()) {
      throw new IllegalArgumentException(what + " must not be empty");
    }
    if (s.contains("/") || s.equals(".") || s.equals("..") || hasControlChars(s)) {
      throw new IllegalArgumentException(
          String.format("Invalid %s '%s': must not contain '/' or control characters", what, s));
    }
  }

  private static boolean hasControlChars(String s) {
    return s.chars().anyMatch(Character::isISOControl);
  }

  private static boolean isValidName(String s) {
    return s != null
        && !s.isEmpty()
        && !s.contains("/")
        && !s.startsWith(".")
        && !s.startsWith("_")
        && !hasControlChars(s);
  }

  private static String ref(Namespace ns) {
    return ns.level(0);
  }

  /** Namespace without the ref level, e.g. {@code ml} for {@code main.ml}. */
  private static String nsWithoutRef(Namespace ns) {
    return String.join(".", Arrays.asList(ns.levels()).subList(1, ns.length()));
  }

  private static String nameWithoutRef(TableIdentifier id) {
    String ns = nsWithoutRef(id.namespace());
    return ns.isEmpty() ? id.name() : ns + "." + id.name();
  }

  private String usage() {
    return String.format(
        "%s identifiers are %s.<lakeFS ref>.<namespace>[.<namespace>…].<table>, e.g. %s.main.ml.my_table",
        getClass().getSimpleName(), catalogName, catalogName);
  }

  /** Throws IllegalArgumentException with an explanation if {@code id} is not a table identifier. */
  private void checkTableIdentifier(TableIdentifier id) {
    Namespace ns = id.namespace();
    if (ns.length() < 2) {
      throw new IllegalArgumentException(
          String.format(
              "Invalid table identifier '%s'%s: the first namespace level is the lakeFS ref and at"
                  + " least one more namespace level is required. %s",
              id,
              ns.length() == 1 ? " at lakeFS ref '" + ns.level(0) + "'" : "",
              usage()));
    }
    checkSegment(ref(ns), "lakeFS ref");
    for (int i = 1; i < ns.length(); i++) {
      if (!isValidName(ns.level(i))) {
        throw new IllegalArgumentException(
            String.format(
                "Invalid namespace level '%s' in '%s' at lakeFS ref '%s': names must be non-empty,"
                    + " must not contain '/' and must not start with '.' or '_'",
                ns.level(i), nameWithoutRef(id), ref(ns)));
      }
    }
    if (!isValidName(id.name())) {
      throw new IllegalArgumentException(
          String.format(
              "Invalid table name '%s' in '%s' at lakeFS ref '%s': names must be non-empty, must"
                  + " not contain '/' and must not start with '.' or '_'",
              id.name(), nameWithoutRef(id), ref(ns)));
    }
  }

  private void checkNamespace(Namespace ns, int minLevels) {
    if (ns.length() < minLevels) {
      throw new IllegalArgumentException(
          String.format(
              "Invalid namespace '%s': %s. %s",
              ns,
              ns.isEmpty()
                  ? "the first namespace level must be a lakeFS ref"
                  : "lakeFS ref '" + ns.level(0) + "' needs at least one more namespace level",
              usage()));
    }
    if (!ns.isEmpty()) {
      checkSegment(ref(ns), "lakeFS ref");
    }
    for (int i = 1; i < ns.length(); i++) {
      if (!isValidName(ns.level(i))) {
        throw new IllegalArgumentException(
            String.format(
                "Invalid namespace level '%s' in '%s' at lakeFS ref '%s': names must be non-empty,"
                    + " must not contain '/' and must not start with '.' or '_'",
                ns.level(i), nsWithoutRef(ns), ref(ns)));
      }
    }
  }

  @Override
  protected boolean isValidIdentifier(TableIdentifier id) {
    try {
      checkTableIdentifier(id);
      return true;
    } catch (IllegalArgumentException e) {
      return false;
    }
  }

  /** Ref-relative path of a namespace (without the ref level), "" for the ref root. */
  private String relativeNamespacePath(Namespace ns) {
    List<String> parts = new ArrayList<>();
    if (!prefix.isEmpty()) {
      parts.add(prefix);
    }
    parts.addAll(Arrays.asList(ns.levels()).subList(1, ns.length()));
    return String.join("/", parts);
  }

  private String relativeTableLocation(TableIdentifier id) {
    String ns = relativeNamespacePath(id.namespace());
    return ns.isEmpty() ? id.name() : ns + "/" + id.name();
  }

  private Path physical(String ref, String relative) {
    return new Path(fileIO(ref).resolve(relative));
  }

  private FileSystem fs(String ref) {
    Path root = new Path(refRoot(ref));
    try {
      return root.getFileSystem(conf);
    } catch (IOException e) {
      throw new RuntimeIOException(e, "Cannot get a file system for lakeFS ref '%s' (%s)", ref, root);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // tables

  @Override
  protected LakeFSRefTableOperations newTableOps(TableIdentifier id) {
    checkTableIdentifier(id);
    String ref = ref(id.namespace());
    return new LakeFSRefTableOperations(
        fileIO(ref),
        repository,
        ref,
        relativeTableLocation(id),
        nameWithoutRef(id),
        fullTableName(name(), id));
  }

  @Override
  protected String defaultWarehouseLocation(TableIdentifier id) {
    return relativeTableLocation(id);
  }

  @Override
  public Table loadTable(TableIdentifier id) {
    Namespace ns = id.namespace();
    if (ns.isEmpty()) {
      throw new NoSuchTableException(
          "Table '%s' not found: no lakeFS ref given. %s", id, usage());
    }
    if (!isValidIdentifier(id) && !isValidMetadataIdentifier(id)) {
      String why;
      try {
        checkTableIdentifier(id);
        why = "";
      } catch (IllegalArgumentException e) {
        why = e.getMessage();
      }
      throw new NoSuchTableException("Table '%s' not found at lakeFS ref '%s': %s", nameWithoutRef(id), ref(ns), why);
    }
    try {
      return super.loadTable(id);
    } catch (NoSuchTableException e) {
      if (e.getMessage() != null && e.getMessage().contains("lakeFS ref")) {
        throw e; // already specific (e.g. the pointer names a missing metadata file)
      }
      String ref = ref(ns);
      throw new NoSuchTableException(
          e,
          "Table '%s' does not exist at lakeFS ref '%s' of repository '%s' (no %s under %s; the"
              + " ref may not exist either)",
          nameWithoutRef(id),
          ref,
          repository,
          "metadata/" + LakeFSRefTableOperations.POINTER_FILE,
          safeRoot(ref));
    }
  }

  private String safeRoot(String ref) {
    try {
      return refRoot(ref);
    } catch (IllegalArgumentException e) {
      return "<invalid ref>";
    }
  }

  @Override
  public TableBuilder buildTable(TableIdentifier id, Schema schema) {
    checkTableIdentifier(id);
    checkNoTableAncestor(ref(id.namespace()), id.namespace(), nameWithoutRef(id));
    return new RefTableBuilder(id, super.buildTable(id, schema));
  }

  /**
   * Normalises an explicit table LOCATION: an absolute URI under the ref root becomes ref-relative;
   * any other absolute location is refused because it would tie the table to one ref.
   */
  private String normalizeLocation(TableIdentifier id, String location) {
    if (location == null) {
      return null;
    }
    String ref = ref(id.namespace());
    String rel = fileIO(ref).relativize(location.trim());
    if (LakeFSRefFileIO.isAbsolute(rel)) {
      throw new IllegalArgumentException(
          String.format(
              "Cannot use LOCATION '%s' for table '%s' at lakeFS ref '%s': it is outside the ref"
                  + " root %s. %s records ref-relative paths only; omit LOCATION (default %s) or"
                  + " give a path relative to the ref root",
              location, nameWithoutRef(id), ref, refRoot(ref), getClass().getSimpleName(),
              relativeTableLocation(id)));
    }
    while (rel.endsWith("/")) {
      rel = rel.substring(0, rel.length() - 1);
    }
    for (String part : rel.split("/")) {
      if (part.isEmpty() || part.equals(".") || part.equals("..")) {
        throw new IllegalArgumentException(
            String.format(
                "Invalid LOCATION '%s' for table '%s' at lakeFS ref '%s'",
                location, nameWithoutRef(id), ref));
      }
    }
    return rel;
  }

  /** Wraps Iceberg's builder to normalise explicit locations. */
  private final class RefTableBuilder implements TableBuilder {
    private final TableIdentifier id;
    private final TableBuilder delegate;

    RefTableBuilder(TableIdentifier id, TableBuilder delegate) {
      this.id = id;
      this.delegate = delegate;
    }

    @Override
    public TableBuilder withPartitionSpec(PartitionSpec spec) {
      delegate.withPartitionSpec(spec);
      return this;
    }

    @Override
    public TableBuilder withSortOrder(SortOrder sortOrder) {
      delegate.withSortOrder(sortOrder);
      return this;
    }

    @Override
    public TableBuilder withLocation(String location) {
      delegate.withLocation(normalizeLocation(id, location));
      return this;
    }

    @Override
    public TableBuilder withProperties(Map<String, String> properties) {
      delegate.withProperties(properties);
      return this;
    }

    @Override
    public TableBuilder withProperty(String key, String value) {
      delegate.withProperty(key, value);
      return this;
    }

    @Override
    public Table create() {
      return delegate.create();
    }

    @Override
    public Transaction createTransaction() {
      return delegate.createTransaction();
    }

    @Override
    public Transaction replaceTransaction() {
      return delegate.replaceTransaction();
    }

    @Override
    public Transaction createOrReplaceTransaction() {
      return delegate.createOrReplaceTransaction();
    }
  }

  @Override
  public List<TableIdentifier> listTables(Namespace ns) {
    checkNamespace(ns, 1);
    String ref = ref(ns);
    if (ns.length() == 1) {
      // tables need at least one namespace level below the ref
      if (!refExists(ref)) {
        throw noSuchNamespace(ns, new Path(refRoot(ref)));
      }
      return Collections.emptyList();
    }
    FileSystem fs = fs(ref);
    Path dir = physical(ref, relativeNamespacePath(ns));
    FileStatus[] children = listOrNull(fs, dir, ref);
    if (children == null) {
      throw noSuchNamespace(ns, dir);
    }
    List<TableIdentifier> tables = new ArrayList<>();
    for (FileStatus child : sorted(children)) {
      if (child.isDirectory() && isValidName(child.getPath().getName()) && isTable(fs, child.getPath(), ref)) {
        tables.add(TableIdentifier.of(ns, child.getPath().getName()));
      }
    }
    return tables;
  }

  @Override
  public boolean dropTable(TableIdentifier id, boolean purge) {
    checkTableIdentifier(id);
    String ref = ref(id.namespace());
    LakeFSRefTableOperations ops = newTableOps(id);
    TableMetadata last;
    try {
      last = ops.current();
    } catch (NoSuchTableException e) {
      last = null; // pointer names a metadata file that is gone: still drop the pointer
    }
    if (last == null && ops.readPointer() == null) {
      return false;
    }
    if (purge && last != null) {
      CatalogUtil.dropTableData(ops.io(), last);
    }
    ops.io().deleteFile(ops.pointerLocation());
    if (purge) {
      Path dir = physical(ref, relativeTableLocation(id));
      try {
        fs(ref).delete(dir, true);
      } catch (IOException e) {
        throw new RuntimeIOException(
            e, "Dropped table '%s' at lakeFS ref '%s' but failed to delete %s", nameWithoutRef(id), ref, dir);
      }
    }
    return true;
  }

  @Override
  public void renameTable(TableIdentifier from, TableIdentifier to) {
    throw new UnsupportedOperationException(
        String.format(
            "Cannot rename table '%s' at lakeFS ref '%s' to '%s' at lakeFS ref '%s': %s keeps"
                + " every file path ref-relative and rooted at the table's location, so a rename"
                + " would rewrite all metadata. Use CREATE TABLE … AS SELECT and DROP TABLE instead",
            from.namespace().isEmpty() ? from : nameWithoutRef(from),
            from.namespace().isEmpty() ? "" : ref(from.namespace()),
            to.namespace().isEmpty() ? to : nameWithoutRef(to),
            to.namespace().isEmpty() ? "" : ref(to.namespace()),
            getClass().getSimpleName()));
  }

  // ---------------------------------------------------------------------------------------------
  // namespaces

  @Override
  public void createNamespace(Namespace ns, Map<String, String> metadata) {
    checkNamespace(ns, 1);
    String ref = ref(ns);
    if (ns.length() == 1) {
      if (refExists(ref)) {
        throw new AlreadyExistsException(
            "lakeFS ref '%s' of repository '%s' already exists", ref, repository);
      }
      throw new UnsupportedOperationException(
          String.format(
              "Cannot create lakeFS ref '%s' of repository '%s' as a namespace: create branches"
                  + " with lakeFS (lakectl branch create / the lakeFS API)",
              ref, repository));
    }
    FileSystem fs = fs(ref);
    checkNoTableAncestor(ref, ns, nsWithoutRef(ns));
    Path dir = physical(ref, relativeNamespacePath(ns));
    if (isTable(fs, dir, ref)) {
      throw new AlreadyExistsException(
          "Cannot create namespace '%s' at lakeFS ref '%s': a table with that name exists",
          nsWithoutRef(ns), ref);
    }
    if (namespaceExists(ns)) {
      throw new AlreadyExistsException(
          "Namespace '%s' already exists at lakeFS ref '%s' of repository '%s'",
          nsWithoutRef(ns), ref, repository);
    }
    writeMarker(ns, metadata == null ? Collections.emptyMap() : metadata, false);
  }

  @Override
  public List<Namespace> listNamespaces(Namespace ns) {
    if (ns.isEmpty()) {
      return listRefs();
    }
    checkNamespace(ns, 1);
    String ref = ref(ns);
    FileSystem fs = fs(ref);
    Path dir = physical(ref, relativeNamespacePath(ns));
    FileStatus[] children = listOrNull(fs, dir, ref);
    if (children == null) {
      if (ns.length() == 1 && refExists(ref)) {
        return Collections.emptyList(); // ref exists but lakefs.prefix is empty
      }
      throw noSuchNamespace(ns, dir);
    }
    List<Namespace> result = new ArrayList<>();
    for (FileStatus child : sorted(children)) {
      String name = child.getPath().getName();
      if (child.isDirectory()
          && isValidName(name)
          && !isTable(fs, child.getPath(), ref)
          && containsNamespaceContent(fs, child.getPath(), ref, 0)) {
        String[] levels = Arrays.copyOf(ns.levels(), ns.length() + 1);
        levels[ns.length()] = name;
        result.add(Namespace.of(levels));
      }
    }
    return result;
  }

  /**
   * Lists refs when the template ends in {@code /{ref}} (directories below the repository root;
   * through lakeFS's S3 gateway those are the branches). Returns an empty list otherwise.
   */
  private List<Namespace> listRefs() {
    if (!rootTemplate.endsWith("/" + REF_VAR)
        || rootTemplate.indexOf(REF_VAR) != rootTemplate.length() - REF_VAR.length()) {
      return Collections.emptyList();
    }
    String parent = rootTemplate.substring(0, rootTemplate.length() - REF_VAR.length());
    if (repository != null) {
      parent = parent.replace(REPO_VAR, repository);
    }
    try {
      Path p = new Path(parent);
      FileStatus[] children = p.getFileSystem(conf).listStatus(p);
      List<Namespace> refs = new ArrayList<>();
      for (FileStatus child : sorted(children)) {
        String name = child.getPath().getName();
        if (child.isDirectory() && !name.startsWith(".") && !name.startsWith("_")) {
          refs.add(Namespace.of(name));
        }
      }
      return refs;
    } catch (IOException | RuntimeException e) {
      return Collections.emptyList();
    }
  }

  @Override
  public boolean namespaceExists(Namespace ns) {
    if (ns.isEmpty()) {
      return true;
    }
    try {
      checkNamespace(ns, 1);
    } catch (IllegalArgumentException e) {
      return false;
    }
    String ref = ref(ns);
    if (ns.length() == 1) {
      return refExists(ref);
    }
    FileSystem fs = fs(ref);
    Path dir = physical(ref, relativeNamespacePath(ns));
    return !isTable(fs, dir, ref) && containsNamespaceContent(fs, dir, ref, 0);
  }

  @Override
  public Map<String, String> loadNamespaceMetadata(Namespace ns) {
    checkNamespace(ns, 1);
    String ref = ref(ns);
    if (!namespaceExists(ns)) {
      throw noSuchNamespace(ns, physical(ref, relativeNamespacePath(ns)));
    }
    Map<String, String> result = new TreeMap<>();
    if (ns.length() > 1) {
      result.putAll(readMarker(ns));
    }
    result.put("lakefs.ref", ref);
    if (repository != null) {
      result.put("lakefs.repository", repository);
    }
    result.put("location", physical(ref, relativeNamespacePath(ns)).toString());
    return result;
  }

  @Override
  public boolean dropNamespace(Namespace ns) {
    checkNamespace(ns, 1);
    String ref = ref(ns);
    if (ns.length() == 1) {
      throw new UnsupportedOperationException(
          String.format(
              "Cannot drop lakeFS ref '%s' of repository '%s' as a namespace: delete branches with"
                  + " lakeFS (lakectl branch delete / the lakeFS API)",
              ref, repository));
    }
    if (!namespaceExists(ns)) {
      return false;
    }
    if (!listTables(ns).isEmpty() || !listNamespaces(ns).isEmpty()) {
      throw new NamespaceNotEmptyException(
          "Namespace '%s' at lakeFS ref '%s' of repository '%s' is not empty",
          nsWithoutRef(ns), ref, repository);
    }
    FileSystem fs = fs(ref);
    Path dir = physical(ref, relativeNamespacePath(ns));
    try {
      fs.delete(new Path(dir, NAMESPACE_MARKER), false);
      FileStatus[] rest = listOrNull(fs, dir, ref);
      if (rest != null && rest.length == 0) {
        fs.delete(dir, false); // local file systems: remove the now empty directory
      }
    } catch (IOException e) {
      throw new RuntimeIOException(
          e, "Failed to drop namespace '%s' at lakeFS ref '%s' (%s)", nsWithoutRef(ns), ref, dir);
    }
    return true;
  }

  @Override
  public boolean setProperties(Namespace ns, Map<String, String> properties) {
    checkNamespace(ns, 2);
    requireNamespace(ns);
    Map<String, String> props = new TreeMap<>(readMarker(ns));
    props.putAll(properties);
    writeMarker(ns, props, true);
    return true;
  }

  @Override
  public boolean removeProperties(Namespace ns, Set<String> properties) {
    checkNamespace(ns, 2);
    requireNamespace(ns);
    Map<String, String> props = new TreeMap<>(readMarker(ns));
    props.keySet().removeAll(properties);
    writeMarker(ns, props, true);
    return true;
  }

  private void requireNamespace(Namespace ns) {
    if (!namespaceExists(ns)) {
      throw noSuchNamespace(ns, physical(ref(ns), relativeNamespacePath(ns)));
    }
  }

  /** Says whether the namespace or the whole ref is missing. */
  private NoSuchNamespaceException noSuchNamespace(Namespace ns, Path dir) {
    String ref = ref(ns);
    if (ns.length() == 1 || !refExists(ref)) {
      return new NoSuchNamespaceException(
          "lakeFS ref '%s' does not exist (or is empty) in repository '%s' (%s)",
          ref, repository, refRoot(ref));
    }
    return new NoSuchNamespaceException(
        "Namespace '%s' does not exist at lakeFS ref '%s' of repository '%s' (%s)",
        nsWithoutRef(ns), ref, repository, dir);
  }

  private String markerLocation(Namespace ns) {
    return relativeNamespacePath(ns) + "/" + NAMESPACE_MARKER;
  }

  private Map<String, String> readMarker(Namespace ns) {
    String ref = ref(ns);
    Properties props = new Properties();
    try (InputStream in = fileIO(ref).newInputFile(markerLocation(ns)).newStream()) {
      props.load(new InputStreamReader(in, StandardCharsets.UTF_8));
    } catch (IOException | RuntimeException e) {
      if (NotFound.isNotFound(e)) {
        return Collections.emptyMap();
      }
      throw new RuntimeIOException(
          e instanceof IOException ? (IOException) e : new IOException(e),
          "Failed to read properties of namespace '%s' at lakeFS ref '%s'",
          nsWithoutRef(ns),
          ref);
    }
    Map<String, String> result = new TreeMap<>();
    for (String key : props.stringPropertyNames()) {
      result.put(key, props.getProperty(key));
    }
    return result;
  }

  /** Writes the marker as sorted key=value lines, without the timestamp comment of Properties. */
  private void writeMarker(Namespace ns, Map<String, String> metadata, boolean overwrite) {
    String ref = ref(ns);
    StringBuilder text = new StringBuilder("# Iceberg namespace (LakeFSRefCatalog)\n");
    for (Map.Entry<String, String> e : new TreeMap<>(metadata).entrySet()) {
      Properties one = new Properties();
      one.setProperty(e.getKey(), e.getValue() == null ? "" : e.getValue());
      StringWriter w = new StringWriter();
      try {
        one.store(w, null);
      } catch (IOException ex) {
        throw new UncheckedIOException(ex);
      }
      for (String line : w.toString().split("\n")) {
        if (!line.startsWith("#") && !line.isEmpty()) {
          text.append(line.replace("\r", "")).append('\n');
        }
      }
    }
    org.apache.iceberg.io.OutputFile out = fileIO(ref).newOutputFile(markerLocation(ns));
    try (OutputStream os = overwrite ? out.createOrOverwrite() : out.create()) {
      os.write(text.toString().getBytes(StandardCharsets.UTF_8));
    } catch (org.apache.iceberg.exceptions.AlreadyExistsException e) {
      throw new AlreadyExistsException(
          e, "Namespace '%s' already exists at lakeFS ref '%s'", nsWithoutRef(ns), ref);
    } catch (IOException | RuntimeException e) {
      throw new RuntimeIOException(
          e instanceof IOException ? (IOException) e : new IOException(e),
          "Failed to write namespace marker of '%s' at lakeFS ref '%s' of repository '%s' (does"
              + " the ref exist?)",
          nsWithoutRef(ns),
          ref,
          repository);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // file-system helpers (prefix listing; works on S3 where directories are only key prefixes)

  private boolean refExists(String ref) {
    try {
      return fs(ref).exists(new Path(refRoot(ref)));
    } catch (IOException | RuntimeException e) {
      if (NotFound.isMissingRef(e)) {
        return false;
      }
      throw wrap(e, "Failed to check whether lakeFS ref '%s' of repository '%s' exists", ref, repository);
    }
  }

  private boolean isTable(FileSystem fs, Path dir, String ref) {
    Path pointer = new Path(new Path(dir, "metadata"), LakeFSRefTableOperations.POINTER_FILE);
    try {
      return fs.exists(pointer);
    } catch (IOException | RuntimeException e) {
      if (NotFound.isMissingRef(e)) {
        return false;
      }
      throw wrap(e, "Failed to check %s at lakeFS ref '%s'", pointer, ref);
    }
  }

  /** Null when {@code dir} does not exist (or the ref does not). */
  private FileStatus[] listOrNull(FileSystem fs, Path dir, String ref) {
    try {
      return fs.listStatus(dir);
    } catch (FileNotFoundException e) {
      return null;
    } catch (IOException | RuntimeException e) {
      if (NotFound.isMissingRef(e)) {
        return null;
      }
      throw wrap(e, "Failed to list %s at lakeFS ref '%s' of repository '%s'", dir, ref, repository);
    }
  }

  /** True if {@code dir} holds a namespace marker or (below it) a table or a marker. */
  private boolean containsNamespaceContent(FileSystem fs, Path dir, String ref, int depth) {
    FileStatus[] children = listOrNull(fs, dir, ref);
    if (children == null) {
      return false;
    }
    List<Path> subdirs = new ArrayList<>();
    for (FileStatus child : children) {
      String name = child.getPath().getName();
      if (!child.isDirectory() && NAMESPACE_MARKER.equals(name)) {
        return true;
      }
      if (child.isDirectory() && isValidName(name)) {
        subdirs.add(child.getPath());
      }
    }
    List<Path> nonTables = new ArrayList<>();
    for (Path sub : subdirs) {
      if (isTable(fs, sub, ref)) {
        return true;
      }
      nonTables.add(sub);
    }
    if (depth >= MAX_NAMESPACE_SCAN_DEPTH) {
      return false;
    }
    for (Path sub : nonTables) {
      if (containsNamespaceContent(fs, sub, ref, depth + 1)) {
        return true;
      }
    }
    return false;
  }

  /** Refuses to nest a table or namespace inside an existing table's directory. */
  private void checkNoTableAncestor(String ref, Namespace ns, String what) {
    FileSystem fs = fs(ref);
    for (int len = 2; len <= ns.length(); len++) {
      Namespace ancestor = Namespace.of(Arrays.copyOf(ns.levels(), len));
      Path dir = physical(ref, relativeNamespacePath(ancestor));
      if (isTable(fs, dir, ref)) {
        throw new IllegalArgumentException(
            String.format(
                "Cannot create '%s' at lakeFS ref '%s': '%s' is a table, not a namespace",
                what, ref, nsWithoutRef(ancestor)));
      }
    }
  }

  private static FileStatus[] sorted(FileStatus[] statuses) {
    FileStatus[] copy = statuses.clone();
    Arrays.sort(copy, Comparator.comparing(s -> s.getPath().getName()));
    return copy;
  }

  private static RuntimeException wrap(Exception e, String format, Object... args) {
    if (e instanceof IOException) {
      return new RuntimeIOException((IOException) e, format, args);
    }
    return new RuntimeIOException(new IOException(e), format, args);
  }

  // ---------------------------------------------------------------------------------------------

  @Override
  public void close() throws IOException {
    for (LakeFSRefFileIO io : fileIOs.values()) {
      io.close();
    }
    fileIOs.clear();
    super.close();
  }

  @Override
  public String toString() {
    return String.format(
        "LakeFSRefCatalog{name=%s, repository=%s, rootTemplate=%s, prefix=%s}",
        catalogName, repository, rootTemplate, prefix);
  }
}
