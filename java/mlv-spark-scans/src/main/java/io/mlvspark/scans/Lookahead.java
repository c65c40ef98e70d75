package io.mlvspark.scans;

import java.util.Iterator;
import java.util.NoSuchElementException;

/**
 * An iterator over the elements a scan computes one at a time: {@link #advance} returns the next
 * one, or null when there are no more. Shared by mlv-spark's JVM scans.
 */
public abstract class Lookahead<T> implements Iterator<T> {
  private T next;

  /** The next element, or null at the end. */
  protected abstract T advance();

  @Override
  public final boolean hasNext() {
    if (next == null) {
      next = advance();
    }
    return next != null;
  }

  @Override
  public final T next() {
    if (!hasNext()) {
      throw new NoSuchElementException();
    }
    T element = next;
    next = null;
    return element;
  }
}
