/* placeholder: tests for metrics are being written */
int main(void) {
        return 77;
}
