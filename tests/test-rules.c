/* placeholder: tests for rules are being written */
int main(void) {
        return 77;
}
